"""`ftdiag doctor RUN_DIR`: the whole diagnosis in one command."""

from __future__ import annotations

from pathlib import Path

import typer

from ftdiag.cli._common import emit, handle_errors, start_ranks, write_report
from ftdiag.errors import FtdiagError


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    @handle_errors
    def doctor(
        run_dir: Path = typer.Argument(
            ..., help="Training output dir (adapter, trainer_state.json)."
        ),
        base: str | None = typer.Option(None, "--base", help="Base model (default: recorded)."),
        revision: str | None = typer.Option(
            None, "--revision", help="Hub branch, tag or commit of the base model."),
        titles: Path | None = typer.Option(None, "--titles", help="Titles file for the A/B test."),
        n: int = typer.Option(16, "--n", min=1, help="Titles to draw from the training data."),
        max_new_tokens: int = typer.Option(96, "--max-new-tokens", min=1),
        report: Path | None = typer.Option(None, "--report", help="Write FILE.html or FILE.md."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
        strict: bool = typer.Option(False, "--strict", help="Exit 1 on warnings too."),
        runtime: str | None = typer.Option(
            None, "--runtime", help="Serving runtime to check the adapter against (T001-T003): "
            "llama.cpp, vllm, sglang, ollama or tgi, optionally NAME@VERSION."),
        dtype: str = typer.Option(
            "auto", "--dtype", help="The model's dtype: auto (bf16 where this CPU computes it "
            "natively, measured at start-up; else fp32), fp32, bf16 or fp16."),
    ) -> None:
        """Is my fine-tune working, and if not, why? Runs every layer, ranks the causes."""
        from ftdiag import timing

        clock = timing.start()
        from ftdiag.doctor.run import run_doctor
        from ftdiag.render.doctor import print_doctor
        from ftdiag.render.progress import stage_progress
        from ftdiag.render.timing import with_timing

        if report is not None and report.suffix.lower() not in (".html", ".htm", ".md"):
            raise FtdiagError(f"--report must end in .html or .md, got {report.name}")
        from ftdiag.model.dtype import check_choice

        check_choice(dtype)
        if runtime is not None:
            from ftdiag.adapters.target import parse_runtime

            parse_runtime(runtime)  # an unknown name is one line before anything runs
        main = start_ranks()  # under torchrun: shards of the titles, rank 0 prints
        with stage_progress(enabled=not json_out and main) as (stage, progress):
            result = run_doctor(run_dir, base=base, titles=titles, n=n,
                                max_new_tokens=max_new_tokens, stage=stage, progress=progress,
                                revision=revision, runtime=runtime, dtype=dtype)
        clock.start_render()
        result.report.timing = clock
        if report is not None:
            write_doctor_report(result, report)
        emit(result.report, json_out=json_out, strict=strict,
             render=with_timing(lambda _rep, console: print_doctor(result, console), clock))


def write_doctor_report(result: object, path: Path) -> None:
    """Write the doctor report as HTML or Markdown, by suffix."""
    from ftdiag.render.doctor import to_markdown
    from ftdiag.render.doctor_html import to_html

    render = to_markdown if path.suffix.lower() == ".md" else to_html
    write_report(path, render(result))  # type: ignore[arg-type]
