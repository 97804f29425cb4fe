"""`ftdiag demo [--fast]`: the README's main job on the embedded model."""

from __future__ import annotations

from pathlib import Path

import typer

from ftdiag.commands._common import emit, handle_errors, write_report


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @handle_errors
    def demo(
        fast: bool = typer.Option(False, "--fast", help="About a minute instead of a few."),
        workdir: Path | None = typer.Option(None, "--workdir",
                                            help="Where the demo run goes (default: cache dir)."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
    ) -> None:
        """Train on the embedded SmolLM2-135M, run doctor, reproduce and catch the seed's bug."""
        from ftdiag.demo import run_demo
        from ftdiag.render.demo import print_demo
        from ftdiag.render.doctor import to_html
        from ftdiag.render.progress import stage_progress

        with stage_progress(enabled=not json_out) as (stage, progress):
            result = run_demo(fast=fast, workdir=workdir, stage=stage, progress=progress)
        write_report(result.report_path, to_html(result.doctor))
        emit(result.report, json_out=json_out,
             render=lambda _rep, console: print_demo(result, console))
