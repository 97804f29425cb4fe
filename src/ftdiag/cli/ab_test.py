"""`ftdiag ab-test`: base vs adapter (vs merged) on the same titles, greedy, side by side."""

from __future__ import annotations

from pathlib import Path

import typer

from ftdiag.cli._common import emit, handle_errors, start_ranks, write_reports
from ftdiag.errors import FtdiagError


def register(app: typer.Typer) -> None:
    @app.command("ab-test")
    @handle_errors
    def ab_test(
        adapter: Path | None = typer.Option(None, "--adapter",
                                            help="LoRA adapter folder or Hub id."),
        base: str | None = typer.Option(None, "--base", help="Base model (default: recorded)."),
        revision: str | None = typer.Option(
            None, "--revision", help="Hub branch, tag or commit of the base model."),
        adapter_revision: str | None = typer.Option(
            None, "--adapter-revision", help="Hub branch, tag or commit of the adapter."),
        merged: Path | None = typer.Option(None, "--merged", help="Merged model folder."),
        titles: Path | None = typer.Option(None, "--titles", help="Titles: txt/JSONL/JSON/CSV."),
        from_train: Path | None = typer.Option(None, "--from-train", help="Sample titles here."),
        n: int = typer.Option(16, "--n", min=1, help="Titles to sample with --from-train."),
        title_field: str | None = typer.Option(None, "--title-field"),
        reference_field: str | None = typer.Option(None, "--reference-field"),
        template: Path | None = typer.Option(None, "--template", help="Prompt file with {title}."),
        chat_template: bool = typer.Option(False, "--chat-template",
                                           help="Use the tokenizer's chat template."),
        max_new_tokens: int = typer.Option(128, "--max-new-tokens", min=1),
        batch_size: int = typer.Option(0, "--batch-size", min=0,
                                       help="Titles per batch (0: from the workload)."),
        sample: bool = typer.Option(False, "--sample", help="Sample instead of greedy (R008)."),
        temperature: float = typer.Option(1.0, "--temperature", min=1e-6),
        seed: int = typer.Option(0, "--seed"),
        check_batch: bool = typer.Option(False, "--check-batch",
                                         help="Re-run one title alone (B004)."),
        max_identical: float | None = typer.Option(
            None, "--max-identical", min=0.0, max=1.0,
            help="Fail (B001) when the identical share exceeds this (default: all identical)."),
        dtype: str = typer.Option(
            "auto", "--dtype", help="Both arms' dtype: auto (bf16 where this CPU computes it "
            "natively, measured at start-up; else fp32), fp32, bf16 or fp16."),
        show: int = typer.Option(10, "--show", min=0, help="Titles to print in full."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
        markdown: Path | None = typer.Option(None, "--markdown", help="Write a Markdown report."),
        html: Path | None = typer.Option(None, "--html", help="Write an HTML report."),
        junit: Path | None = typer.Option(None, "--junit", help="Write JUnit XML for CI."),
        strict: bool = typer.Option(False, "--strict", help="Exit 1 on warnings too."),
        endpoint: str | None = typer.Option(
            None, "--endpoint", help="OpenAI-compatible server URL: test what it serves (E0xx)."),
        served_base: str | None = typer.Option(
            None, "--served-base", help="Model name of the base on the server (default: from "
            "the runtime detected)."),
        served_adapter: str | None = typer.Option(
            None, "--served-adapter", help="Model name of the fine-tune there; on llama.cpp the "
            "LoRA's id or path (default: the only one)."),
        chat: bool = typer.Option(False, "--chat", help="Use /v1/chat/completions (the "
                                  "server's chat template) instead of /v1/completions."),
        request_extra: str | None = typer.Option(
            None, "--request-extra", help="JSON fields added to the adapter's requests "
            "(llama-server lora, TGI adapter_id)."),
        base_request_extra: str | None = typer.Option(
            None, "--base-request-extra", help="JSON fields added to the base's requests "
            "(default on llama.cpp: every LoRA at scale 0)."),
        api_key: str | None = typer.Option(None, "--api-key", envvar="OPENAI_API_KEY",
                                           help="API key (default: $OPENAI_API_KEY)."),
        concurrency: int = typer.Option(8, "--concurrency", min=1, help="Requests in flight."),
        timeout: float = typer.Option(120.0, "--timeout", min=0.1, help="Seconds per request; "
                                      "the whole run's deadline follows from it."),
    ) -> None:
        """Are base and adapter outputs different? Same titles, greedy, one weight copy."""
        from ftdiag import timing

        clock = timing.start()
        from ftdiag.abtest.local import ABConfig, run_ab_test
        from ftdiag.prompts.records import pick_records
        from ftdiag.prompts.template import load_template
        from ftdiag.render.ab_test import print_ab, to_html, to_junit, to_markdown
        from ftdiag.render.progress import stage_progress
        from ftdiag.render.timing import with_timing

        records = pick_records(titles, from_train, n, seed, title_field, reference_field)
        if endpoint is not None:
            from ftdiag.cli.ab_test_endpoint import run_endpoint

            return run_endpoint(
                url=endpoint, served_base=served_base, served_adapter=served_adapter,
                adapter=adapter, base=base, records=records, template=template,
                chat_template=chat_template, chat=chat, request_extra=request_extra,
                base_request_extra=base_request_extra,
                api_key=api_key, concurrency=concurrency, timeout=timeout,
                max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed,
                max_identical=max_identical, show=show, json_out=json_out, markdown=markdown,
                html=html, junit=junit, strict=strict)
        if adapter is None:
            raise FtdiagError("ab-test needs --adapter DIR (or --endpoint URL)")
        tpl = load_template(template, chat_template) if template or chat_template else None
        cfg = ABConfig(adapter_dir=adapter, base=base, merged_dir=merged, template=tpl,
                       max_new_tokens=max_new_tokens, batch_size=batch_size, do_sample=sample,
                       temperature=temperature, seed=seed, check_batch=check_batch,
                       max_identical=max_identical, revision=revision,
                       adapter_revision=adapter_revision, dtype=dtype)
        main = start_ranks()  # under torchrun: shards of the titles, rank 0 prints
        with stage_progress(enabled=not json_out and main) as (stage, progress):
            stage(f"generating {len(records)} titles")
            result = run_ab_test(cfg, records, progress=progress)
        clock.start_render()
        result.report.timing = clock
        write_reports(result, ((markdown, to_markdown), (html, to_html), (junit, to_junit)))
        emit(result.report, json_out=json_out, strict=strict,
             render=with_timing(lambda _rep, console: print_ab(result, console, show=show),
                                clock))
