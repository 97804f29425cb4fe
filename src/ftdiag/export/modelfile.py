"""X005: an Ollama Modelfile that serves the base, another template, or no EOS stop."""

from __future__ import annotations

from pathlib import Path

from ftdiag.errors import FtdiagError
from ftdiag.findings import Finding


def check_modelfile(modelfile: Path, export: Path, kind: str, adapter_dir: Path,
                    base_dir: Path | None) -> tuple[object, Finding]:
    """Not implemented yet."""
    raise FtdiagError("--modelfile is not supported yet")
