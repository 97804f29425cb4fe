"""Typer app: options -> library call -> renderer -> exit code. No logic here.

Each command lives in ftdiag.commands.<name> and defines `register(app)`; COMMANDS below lists
them (a new command adds one import and one entry).
"""

from __future__ import annotations

import logging
import sys

import typer

from ftdiag import __version__
from ftdiag.commands import ab, check_adapter, demo, doctor, loss_report, merge, train
from ftdiag.commands._common import handle_errors, quiet_libraries

__all__ = ["app", "handle_errors", "main", "quiet_libraries"]

COMMANDS = (check_adapter, ab, loss_report, train, merge, doctor, demo)

app = typer.Typer(
    name="ftdiag",
    help="Find out why a LoRA/PEFT fine-tune gives the same output as the base model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ftdiag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging to stderr."),
) -> None:
    """ftdiag: diagnose LoRA/PEFT fine-tunes. Exit codes: 0 ok, 1 check failed, 2 bad input."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr)


for _command in COMMANDS:
    _command.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
