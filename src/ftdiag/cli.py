"""Typer app: options -> library call -> renderer -> exit code. No logic here.

Each command lives in ftdiag.commands.<name> and registers itself on `app`.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from typer.core import TyperGroup

from ftdiag import __version__
from ftdiag.errors import FtdiagError

F = TypeVar("F", bound=Callable[..., Any])

class ErrorExit(typer.Exit):
    """Exit 2 after a user error, carrying it so --json can print the error document."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(2)
        self.message, self.hint = message, hint


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
    from ftdiag.render.findings import error_json

    return error_json(command, message, hint)


app = typer.Typer(
    name="ftdiag",
    help="Find out why a LoRA/PEFT fine-tune gives the same output as the base model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=JsonErrorGroup,
)


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
            from ftdiag.render.console import err

            line = f"[bold red]error:[/] {_escape(exc.message)}"
            if exc.hint:
                line += f" [dim]({_escape(exc.hint)})[/]"
            err().print(line, soft_wrap=True)
            raise ErrorExit(exc.message, exc.hint) from None
        except KeyboardInterrupt:
            from ftdiag.render.console import err

            err().print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


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


def _register_commands() -> None:
    import importlib
    import pkgutil

    import ftdiag.commands as pkg

    for mod in sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)):
        if mod.startswith("_"):
            continue
        importlib.import_module(f"ftdiag.commands.{mod}").register(app)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
