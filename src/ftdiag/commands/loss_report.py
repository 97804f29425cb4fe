"""`ftdiag loss-report`: did the training converge? A verdict with evidence, not just a curve."""

from __future__ import annotations

from pathlib import Path

import typer

from ftdiag.commands._common import emit, handle_errors, write_report


def register(app: typer.Typer) -> None:
    @app.command("loss-report")
    @handle_errors
    def loss_report_cmd(
        paths: list[Path] = typer.Argument(
            ..., metavar="PATH",
            help="Run dir, trainer_state.json, TensorBoard event file/dir, CSV or JSONL; "
                 "several to compare runs."),
        json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
        png: Path | None = typer.Option(None, "--png", help="Also write the loss plot as PNG."),
        strict: bool = typer.Option(False, "--strict", help="Exit 1 on warnings too."),
        step_col: str = typer.Option("step", help="Step column in CSV/JSONL logs."),
        loss_col: str = typer.Option("loss", help="Train loss column in CSV/JSONL logs."),
        eval_col: str = typer.Option("eval_loss", help="Eval loss column in CSV/JSONL logs."),
        min_steps: int = typer.Option(50, min=1, help="Fewer optimizer steps than this: L006."),
        plot: bool = typer.Option(True, "--plot/--no-plot", help="Terminal plot (when a TTY)."),
    ) -> None:
        """Did the training converge? Loss trend, spikes, NaN, overfitting, steps (L001–L008)."""
        from functools import partial

        from ftdiag.convergence import loss_report
        from ftdiag.render.loss import png_bytes, print_loss_report

        report = loss_report(list(paths), min_steps=min_steps, step_col=step_col,
                             loss_col=loss_col, eval_col=eval_col)
        if png is not None:
            write_report(png, png_bytes(report))
        emit(report, json_out=json_out, strict=strict,
             render=partial(print_loss_report, plot=plot))
