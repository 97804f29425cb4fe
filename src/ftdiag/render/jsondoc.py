"""The --json documents (no Rich import: a --json run never loads the terminal renderer)."""

from __future__ import annotations

import json

from ftdiag.findings import Report


def to_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2)


def error_json(command: str, message: str, hint: str = "") -> str:
    """The one JSON document a command prints with --json when it exits 2 on bad input."""
    from ftdiag._version import __version__

    return json.dumps({"tool": "ftdiag", "version": __version__, "command": command,
                       "verdict": "error", "error": {"message": message, "hint": hint}}, indent=2)
