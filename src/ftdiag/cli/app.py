"""Typer app: options -> library call -> renderer -> exit code. No logic here.

Each command lives in ftdiag.cli.<name> and defines `register(app)`; COMMANDS below lists
them (a new command adds one import and one entry).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from ftdiag._version import __version__
from ftdiag.cli import (
    ab_test,
    check_adapter,
    check_export,
    demo,
    doctor,
    loss_report,
    merge,
    train,
)
from ftdiag.cli._common import ErrorExit, handle_errors, quiet_libraries

__all__ = ["app", "exit_now", "handle_errors", "main", "quiet_libraries"]

COMMANDS = (check_adapter, ab_test, loss_report, train, merge, doctor, demo, check_export)


class JsonErrorGroup(TyperGroup):
    """With --json, exit 2 (user error or bad option) also prints one JSON document on stdout."""

    def invoke(self, ctx: Any) -> Any:
        args = [*ctx._protected_args, *ctx.args]
        try:
            return super().invoke(ctx)
        except ErrorExit as exc:
            if "--json" in args:
                typer.echo(_error_json(args[0], exc.message, exc.hint))
            raise
        except typer.TyperException as exc:  # click's UsageError family (exit 2)
            if "--json" in args and getattr(exc, "exit_code", 1) == 2:
                typer.echo(_error_json(args[0], exc.format_message(),
                                       f"see ftdiag {args[0]} --help"))
            raise


def _error_json(command: str, message: str, hint: str) -> str:
    from ftdiag.render.jsondoc import error_json

    return error_json(command, message, hint)

app = typer.Typer(
    name="ftdiag",
    help="Find out why a LoRA/PEFT fine-tune gives the same output as the base model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=JsonErrorGroup,
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
    _check_versions()


@handle_errors
def _check_versions() -> None:
    """A too-old torch, transformers or peft: one line and exit 2, before any command runs."""
    from ftdiag.cli._versions import check_installed

    check_installed()


for _command in COMMANDS:
    _command.register(app)


def main() -> None:
    """Run the CLI, then leave without tearing the interpreter down (see `exit_now`)."""
    from ftdiag.timing import count_from_process_start

    count_from_process_start()  # details.timing: wall time from the process's start
    try:
        app()
    except SystemExit as exc:
        exit_now(exc.code)
    exit_now(0)


def exit_now(code: int | str | None) -> NoReturn:
    """Exit with `code` after flushing output and running atexit hooks, skipping the teardown.

    Once torch, transformers and a model are loaded, the interpreter's own teardown (freeing
    every module and tensor one by one) takes about a second on CPU, after the work is done and
    every file is written (reports are written atomically and closed). Registered atexit hooks
    (temporary folders, logging, child processes) still run.
    """
    import atexit

    if isinstance(code, str):  # sys.exit("message"): print it, exit 1, as Python does
        sys.stderr.write(code + "\n")
        code = 1
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    main()
