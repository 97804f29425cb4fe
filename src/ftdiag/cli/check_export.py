"""`ftdiag check-export`: is the merged folder / GGUF / Modelfile really the trained adapter?"""

from __future__ import annotations

from pathlib import Path

import typer

from ftdiag.cli._common import emit, handle_errors, write_reports


def register(app: typer.Typer) -> None:
    @app.command("check-export")
    @handle_errors
    def check_export_cmd(
        path: Path = typer.Argument(..., help="Merged HF folder, merged .gguf or LoRA .gguf."),
        adapter: Path = typer.Option(
            ..., "--adapter", help="The PEFT LoRA adapter folder, or its Hub id."),
        base: str | None = typer.Option(
            None, "--base", help="Base model: local HF folder, .gguf, 'smollm2-135m' or Hub id "
                                 "(default: the adapter's base_model_name_or_path)."),
        revision: str | None = typer.Option(
            None, "--revision", help="Hub branch, tag or commit of the base model."),
        adapter_revision: str | None = typer.Option(
            None, "--adapter-revision", help="Hub branch, tag or commit of the adapter."),
        modelfile: Path | None = typer.Option(
            None, "--modelfile", help="Ollama Modelfile to check (FROM/ADAPTER/TEMPLATE/stop)."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
        markdown: Path | None = typer.Option(None, "--markdown", help="Write a Markdown report."),
        html: Path | None = typer.Option(None, "--html", help="Write an HTML report."),
        junit: Path | None = typer.Option(None, "--junit", help="Write JUnit XML for CI."),
        strict: bool = typer.Option(False, "--strict", help="Exit 1 on warnings too."),
        runtime: str | None = typer.Option(
            None, "--runtime", help="Serving runtime to check the adapter against (T001-T003): "
            "llama.cpp, vllm, sglang, ollama or tgi, optionally NAME@VERSION."),
    ) -> None:
        """Check an export against the adapter and base: X001-X008, no model loaded."""
        from ftdiag.export.check import check_export

        if runtime is not None:
            from ftdiag.adapters.target import parse_runtime

            parse_runtime(runtime)  # an unknown name is one line before anything is read
        from ftdiag.render.check_export import print_export, to_html, to_junit, to_markdown

        report = check_export(path, adapter, base, modelfile, revision=revision,
                              adapter_revision=adapter_revision, runtime=runtime)
        write_reports(report, ((markdown, to_markdown), (html, to_html), (junit, to_junit)))
        emit(report, json_out=json_out, strict=strict, render=print_export)
