"""`ftdiag loss-report`: did the training converge? A verdict with evidence, not just a curve."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ftdiag.cli._common import emit, handle_errors, write_report

if TYPE_CHECKING:
    from rich.console import Console

    from ftdiag.findings import Report
    from ftdiag.loss.read import LossLog


def register(app: typer.Typer) -> None:
    @app.command("loss-report")
    @handle_errors
    def loss_report_cmd(
        paths: list[Path] | None = typer.Argument(
            None, metavar="PATH",
            help="Run dir, trainer_state.json, TensorBoard event file/dir, W&B run folder, "
                 "LLaMA-Factory trainer_log.jsonl, CSV or JSONL; several to compare runs."),
        mlflow_uri: str | None = typer.Option(
            None, "--mlflow-uri", metavar="URI",
            help="MLflow store: mlflow.db (sqlite), http(s)://server or file:///.../mlruns."),
        run_ids: list[str] | None = typer.Option(
            None, "--run-id", metavar="ID", help="MLflow run to read (repeat to compare)."),
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
        from ftdiag.errors import FtdiagError
        from ftdiag.loss.analysis import loss_report

        if bool(mlflow_uri) != bool(run_ids):
            raise FtdiagError("--mlflow-uri and --run-id go together",
                              "e.g. --mlflow-uri mlflow.db --run-id 3f2a...")
        runs: list[Path | LossLog] = list(paths or [])
        if mlflow_uri and run_ids:
            from ftdiag.loss.sources.mlflow_run import read_mlflow_run

            runs += [read_mlflow_run(mlflow_uri, rid, loss_col=loss_col, eval_col=eval_col)
                     for rid in run_ids]
        if not runs:
            raise FtdiagError("nothing to read", "give a PATH, or --mlflow-uri URI --run-id ID")
        report = loss_report(runs, min_steps=min_steps, step_col=step_col,
                             loss_col=loss_col, eval_col=eval_col)
        if png is not None:
            from ftdiag.render.loss_report import png_bytes

            write_report(png, png_bytes(report))

        def render(rep: Report, console: Console) -> None:
            from ftdiag.render.loss_report import print_loss_report  # not loaded for --json

            print_loss_report(rep, console, plot=plot)

        emit(report, json_out=json_out, strict=strict, render=render)
