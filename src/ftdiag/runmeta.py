"""The parts of ftdiag_meta.json every training path records: base identity, tokenizer, versions.

`ftdiag train` and `FtdiagCallback` write the same keys, so check-adapter, loss-report and doctor
read one layout whoever trained the run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def created() -> str:
    """UTC time stamp of the meta file."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def base_identity(base_dir: Path | None) -> dict[str, Any]:
    """The base's config hash and weights fingerprint (A008 compares them later)."""
    from ftdiag.adapters.fingerprint import weights_fingerprint
    from ftdiag.models import config_hash

    return {"base_config_hash": config_hash(base_dir) if base_dir else None,
            "base_fingerprint": weights_fingerprint(base_dir) if base_dir else None}


def tokenizer_facts(tokenizer: Any) -> dict[str, Any]:
    """pad/eos tokens and ids as the run saw them (R009, D003)."""
    return {key: getattr(tokenizer, key, None)
            for key in ("pad_token", "pad_token_id", "eos_token", "eos_token_id")}


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a run depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for pkg in ("ftdiag", "torch", "transformers", "peft", "trl", "accelerate", "datasets"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out
