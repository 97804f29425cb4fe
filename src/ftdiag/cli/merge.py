"""`ftdiag merge`: fold an adapter into its base (fp32), save atomically, verify the result."""

from __future__ import annotations

from pathlib import Path

import typer

from ftdiag.cli._common import emit, handle_errors


def register(app: typer.Typer) -> None:
    @app.command("merge")
    @handle_errors
    def merge(
        adapter: Path = typer.Option(..., "--adapter", help="LoRA adapter folder or Hub id."),
        base: str | None = typer.Option(None, "--base", help="Base model (default: recorded)."),
        revision: str | None = typer.Option(
            None, "--revision", help="Hub branch, tag or commit of the base model."),
        adapter_revision: str | None = typer.Option(
            None, "--adapter-revision", help="Hub branch, tag or commit of the adapter."),
        out: Path = typer.Option(..., "--out", help="Folder for the merged model."),
        force: bool = typer.Option(False, "--force", help="Replace a non-empty --out."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
        strict: bool = typer.Option(False, "--strict", help="Exit 1 on warnings too."),
    ) -> None:
        """Merge the adapter into the base in fp32 and check merged ≡ base+adapter (B002)."""
        from ftdiag.export.merge import merge_adapter
        from ftdiag.render.merge import print_merge
        from ftdiag.render.progress import stage_progress

        with stage_progress(enabled=not json_out) as (stage, _progress):
            stage(f"merging {adapter} into the base")
            report = merge_adapter(adapter, base, out, force=force, revision=revision,
                                   adapter_revision=adapter_revision)
        emit(report, json_out=json_out, strict=strict, render=print_merge)
