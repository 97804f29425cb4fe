"""`ftdiag train --data FILE --out DIR`: a LoRA fine-tune that says whether it learned."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ftdiag.cli._common import emit, handle_errors


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _targets(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [t.strip() for t in value.split(",") if t.strip()]
    return names or None


def register(app: typer.Typer) -> None:
    @app.command("train")
    @handle_errors
    def train_cmd(
        data: Path = typer.Option(..., "--data", help="trn.json / JSONL / JSON / CSV records."),
        out: Path = typer.Option(..., "--out", help="Output dir (adapter at its top level)."),
        base: str = typer.Option("smollm2-135m", "--base",
                                 help="HF folder, .gguf file, 'smollm2-135m' or Hub id."),
        revision: str | None = typer.Option(
            None, "--revision", help="Hub branch, tag or commit of the base model."),
        records: int | None = typer.Option(None, "--records", min=1,
                                           help="Use the first N records (all when N > file)."),
        eval_share: float = typer.Option(0.1, "--eval-share", help="Share of titles held out."),
        seed: int = typer.Option(42, "--seed"),
        epochs: float = typer.Option(2.0, "--epochs"),
        lr: float = typer.Option(2e-4, "--lr"),
        lora_r: int = typer.Option(16, "--lora-r"),
        lora_alpha: int = typer.Option(32, "--lora-alpha"),
        lora_dropout: float = typer.Option(0.05, "--lora-dropout"),
        target_modules: str | None = typer.Option(
            None, "--target-modules", help="Comma-separated (default: all linear projections)."),
        batch_size: int = typer.Option(8, "--batch-size"),
        grad_accum: int = typer.Option(1, "--grad-accum"),
        max_length: int = typer.Option(256, "--max-length", help="Tokens per example."),
        max_steps: int = typer.Option(-1, "--max-steps", help="Stop after N steps (-1: epochs)."),
        eval_steps: int | None = typer.Option(None, "--eval-steps",
                                              help="Eval/checkpoint interval (default ~5/run)."),
        logging_steps: int = typer.Option(5, "--logging-steps"),
        template: Path | None = typer.Option(None, "--template",
                                             help="Prompt template file with {title}."),
        chat_template: bool = typer.Option(False, "--chat-template",
                                           help="Use the tokenizer's chat template."),
        title_field: str | None = typer.Option(None, "--title-field"),
        text_field: str | None = typer.Option(None, "--text-field"),
        resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
        force: bool = typer.Option(False, "--force", help="Overwrite a previous run in --out."),
        gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing"),
        dtype: str = typer.Option(
            "auto", "--dtype", help="auto (CPU: bf16 autocast only where a start-up probe finds "
            "bf16 matmuls >= 1.5x fp32's speed; else fp32), fp32, bf16 or fp16 (CUDA)."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
        strict: bool = typer.Option(False, "--strict", help="Exit 1 on warnings too."),
    ) -> None:
        """Fine-tune a causal LM with LoRA on title → description data and check the result."""
        from ftdiag.errors import FtdiagError
        from ftdiag.render.console import err
        from ftdiag.render.console import out as stdout
        from ftdiag.render.train import print_data, print_train, train_progress
        from ftdiag.training.callbacks import TrainingInterrupted
        from ftdiag.training.recipe import TrainConfig, train

        if template is not None and chat_template:
            raise FtdiagError("--template and --chat-template exclude each other")
        cfg = TrainConfig(
            data=data, out=out, base=base, revision=revision, records=records,
            eval_share=eval_share, seed=seed,
            epochs=epochs, lr=lr, lora_r=lora_r, lora_alpha=lora_alpha,
            lora_dropout=lora_dropout, target_modules=_targets(target_modules),
            batch_size=batch_size, grad_accum=grad_accum, max_length=max_length,
            max_steps=max_steps, eval_steps=eval_steps, logging_steps=logging_steps,
            template=template, chat_template=chat_template, title_field=title_field,
            text_field=text_field, resume=resume, force=force,
            gradient_checkpointing=gradient_checkpointing, dtype=dtype,
        )
        main = _is_main_process()
        show = main and not json_out
        try:
            with train_progress(enabled=show) as progress:
                result = train(cfg, progress=progress,
                               on_data=(lambda s, c: print_data(s, c, stdout())) if show
                               else None)
        except TrainingInterrupted as stop:
            if main:
                where = stop.checkpoint or "no checkpoint"
                err().print(f"[yellow]interrupted:[/] saved {where}; continue with --resume")
            raise typer.Exit(130) from None
        if not main:
            raise typer.Exit(result.report.exit_code(strict))
        emit(result.report, json_out=json_out, strict=strict,
             render=lambda _rep, console: print_train(result, console))
