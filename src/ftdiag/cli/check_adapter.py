"""`ftdiag check-adapter`: why does my LoRA adapter give the same output as the base model?"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ftdiag.cli._common import emit, handle_errors

if TYPE_CHECKING:
    from rich.console import Console

    from ftdiag.findings import Report


def register(app: typer.Typer) -> None:
    @app.command("check-adapter")
    @handle_errors
    def check_adapter_cmd(
        adapter_dir: Path = typer.Argument(
            ..., help="Folder holding adapter_config.json, or a Hub id ORG/NAME."),
        base: str | None = typer.Option(
            None, "--base", help="Base model: local HF folder, .gguf file, 'smollm2-135m' or "
                                 "Hub id (default: the adapter's base_model_name_or_path)."),
        revision: str | None = typer.Option(
            None, "--revision", help="Hub branch, tag or commit of the base model."),
        adapter_revision: str | None = typer.Option(
            None, "--adapter-revision", help="Hub branch, tag or commit of the adapter."),
        probe: list[str] | None = typer.Option(
            None, "--probe", help="Prompt text for the logit probe (repeatable)."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
        strict: bool = typer.Option(False, "--strict", help="Exit 1 on warnings too."),
        static_only: bool = typer.Option(
            False, "--static-only", help="Only read files; do not load the model."),
        runtime: str | None = typer.Option(
            None, "--runtime", help="Serving runtime to check against (T001-T003): llama.cpp, "
            "vllm, sglang, ollama or tgi, optionally NAME@VERSION."),
    ) -> None:
        """Layered checks on a saved LoRA adapter, cheapest first (files, then loaded model)."""
        from ftdiag.adapters.folder import check_folder

        if runtime is not None:
            from ftdiag.adapters.target import parse_runtime

            parse_runtime(runtime)  # an unknown name is one line before anything is read
        result = check_folder(adapter_dir, base, probe or None, static_only,
                              revision=revision, adapter_revision=adapter_revision,
                              runtime=runtime)

        def render(_rep: Report, console: Console) -> None:
            from ftdiag.render.check_adapter import print_folder_check  # not loaded for --json

            print_folder_check(result, console)

        emit(result.report, json_out=json_out, strict=strict, render=render)
