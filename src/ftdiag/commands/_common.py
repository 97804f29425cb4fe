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
    """Print `report` as JSON or with `render` (default: checks table), then exit.

    Under a launcher (torchrun) only rank 0 prints; every rank exits with the same code.
    """
    from ftdiag.distributed import finish, is_main

    if not is_main():
        pass  # the same report is printed by rank 0
    elif json_out:
        typer.echo(to_json(report))
    else:
        (render or print_report)(report, out())
    finish()
    raise typer.Exit(report.exit_code(strict))


def start_ranks() -> bool:
    """Join the launcher's process group if any (torchrun); True on the rank that prints.

    That rank (rank 0, or the only process) alone shows progress and writes report files.
    """
    from ftdiag.distributed import init, is_main

    init()
    return is_main()
