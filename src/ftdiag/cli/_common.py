"""Glue shared by commands: error handling, printing a report, writing report files."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from ftdiag.errors import FtdiagError

if TYPE_CHECKING:  # Rich and the renderers load only when a command prints to a terminal
    from rich.console import Console

    from ftdiag.findings import Report

F = TypeVar("F", bound=Callable[..., Any])


class ErrorExit(typer.Exit):
    """Exit 2 after a user error, carrying it so --json can print the error document."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(2)
        self.message, self.hint = message, hint


def quiet_libraries() -> None:
    """Silence transformers/peft progress bars and advisory warnings below the CLI.

    Offline mode, caches and tokens stay the user's: HF_HUB_OFFLINE etc. are never set here.
    """
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    if "transformers" in sys.modules:  # else the env vars above act when it is imported
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def handle_errors(fn: F) -> F:
    """Turn FtdiagError into one line on stderr and exit 2; Ctrl-C into exit 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        quiet_libraries()
        try:
            return fn(*args, **kwargs)
        except FtdiagError as exc:
            from rich.markup import escape

            from ftdiag.render.console import err

            line = f"[bold red]error:[/] {escape(exc.message)}"
            if exc.hint:
                line += f" [dim]({escape(exc.hint)})[/]"
            err().print(line, soft_wrap=True)
            raise ErrorExit(exc.message, exc.hint) from None
        except KeyboardInterrupt:
            from ftdiag.render.console import err

            err().print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def write_report(path: Path, content: str | bytes) -> Path:
    """Write a --markdown/--html/--junit/--report/--png file atomically; OSError -> one line.

    Under a launcher only rank 0 writes (every rank holds the same report).
    """
    from ftdiag import atomic
    from ftdiag.distributed import is_main

    if not is_main():
        return path
    try:
        if isinstance(content, bytes):
            atomic.write_bytes(path, content)
        else:
            atomic.write_text(path, content)
    except OSError as exc:
        raise FtdiagError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def write_reports(result: Any,
                  files: Iterable[tuple[Path | None, Callable[[Any], str | bytes]]]) -> None:
    """Each requested (path, renderer) pair written with `write_report`."""
    for path, render in files:
        if path is not None:
            write_report(path, render(result))


def emit(report: Report, *, json_out: bool, strict: bool = False,
         render: Callable[[Report, Console], None] | None = None) -> None:
    """Print `report` as JSON or with `render` (default: checks table), then exit.

    Under a launcher (torchrun) only rank 0 prints; every rank exits with the same code.
    """
    from ftdiag.distributed import finish, is_main

    if not is_main():
        pass  # the same report is printed by rank 0
    elif json_out:
        from ftdiag.render.jsondoc import to_json

        typer.echo(to_json(report))
    else:
        from ftdiag.render.console import out
        from ftdiag.render.findings import print_report

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
