"""`ftdiag demo [--fast]`: the README's main job on the embedded model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ftdiag.cli._common import emit, handle_errors, write_report

if TYPE_CHECKING:
    from rich.console import Console

    from ftdiag.demo.run import DemoResult
    from ftdiag.demo.serve import ServeDemo
    from ftdiag.progress import ProgressFn, StageFn

SERVE_TITLES, SERVE_TOKENS = 3, 32  # the served check at ~4 tokens/s on a small CPU


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @handle_errors
    def demo(
        fast: bool = typer.Option(False, "--fast", help="About a minute instead of a few."),
        workdir: Path | None = typer.Option(None, "--workdir",
                                            help="Where the demo run goes (default: cache dir)."),
        json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
        serve: bool = typer.Option(False, "--serve", help="Then serve the merged model with "
                                   "`transformers serve` and check it (ab-test --endpoint)."),
    ) -> None:
        """Train on the embedded SmolLM2-135M, run doctor, catch the in-place base bug."""
        from ftdiag.demo.run import DemoDetails, run_demo
        from ftdiag.render.demo import print_demo
        from ftdiag.render.doctor_html import to_html
        from ftdiag.render.progress import stage_progress

        with stage_progress(enabled=not json_out) as (stage, progress):
            result = run_demo(fast=fast, workdir=workdir, stage=stage, progress=progress)
            served = _serve(result, stage, progress) if serve else None
        write_report(result.report_path, to_html(result.doctor))
        if served is not None:
            result.report.add(*served.report.checks)
            assert isinstance(result.report.details, DemoDetails)  # demo_report() sets it
            result.report.details.serve = {"url": served.url, "merged": str(served.merged)}

        def render(_rep: object, console: Console) -> None:
            print_demo(result, console)
            if served is not None:
                from ftdiag.render.ab_test_endpoint import print_serve_demo

                print_serve_demo(served, console)

        emit(result.report, json_out=json_out, render=render)


def _serve(result: DemoResult, stage: StageFn, progress: ProgressFn) -> ServeDemo:
    """Merge, serve and check the demo's adapter (ftdiag.demo.serve)."""
    from ftdiag.demo.serve import run_serve_demo
    from ftdiag.model.load import EMBEDDED_NAME
    from ftdiag.prompts.records import read_records

    records = read_records(result.data)[:SERVE_TITLES]
    return run_serve_demo(result.train.adapter_dir, EMBEDDED_NAME, records, result.workdir,
                          max_new_tokens=SERVE_TOKENS, stage=stage, progress=progress)
