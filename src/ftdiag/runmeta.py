"""ftdiag_meta.json, the evidence a run records beside its adapter: its one reader and writer.

`ftdiag train` and `FtdiagCallback` write it (training.meta builds the records), `merge` copies it;
check-adapter, ab-test, loss-report and doctor read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftdiag import atomic
from ftdiag.safeio import read_json

META_FILE = "ftdiag_meta.json"


def read_meta(adapter_dir: Path | str) -> dict[str, Any]:
    """ftdiag_meta.json written by `ftdiag train` beside the adapter, or {} when absent (or not
    an object); a file that does not decode is a user error (ftdiag.safeio)."""
    path = Path(adapter_dir) / META_FILE
    if not path.is_file():
        return {}
    data = read_json(path, hint="ftdiag writes it atomically: was it edited or copied in part? "
                                "delete it to go on without the training record")
    return data if isinstance(data, dict) else {}


def write_meta(folder: Path | str, meta: dict[str, Any]) -> Path:
    """Write `meta` as the folder's ftdiag_meta.json atomically (never half-written)."""
    path = Path(folder) / META_FILE
    atomic.write_json(path, meta)
    return path
