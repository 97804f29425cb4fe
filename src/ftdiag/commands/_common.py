"""Glue shared by commands: print a report (Rich or JSON) and leave with its exit code."""

from __future__ import annotations

from collections.abc import Callable

import typer
from rich.console import Console

from ftdiag.findings import Report
from ftdiag.render.console import out
from ftdiag.render.findings import print_report, to_json


def emit(report: Report, *, json_out: bool, strict: bool = False,
         render: Callable[[Report, Console], None] | None = None) -> None:
    """Print `report` as JSON or with `render` (default: checks table), then exit."""
    if json_out:
        typer.echo(to_json(report))
    else:
        (render or print_report)(report, out())
    raise typer.Exit(report.exit_code(strict))
