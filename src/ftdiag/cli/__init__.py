"""The `ftdiag` command line: `app.py` builds the Typer app, one module per command
(`register(app)`, named like its renderer in `render/`), `_`-prefixed helpers shared by them."""


def main() -> None:
    """The console script `ftdiag` (entry point `ftdiag.cli:main`)."""
    from ftdiag.cli.app import main as run

    run()
