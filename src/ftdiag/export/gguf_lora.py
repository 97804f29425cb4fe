"""X004: a LoRA GGUF (llama.cpp layout) checked against the PEFT adapter it was converted from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftdiag.errors import FtdiagError
from ftdiag.export.lora import LoraAdapter
from ftdiag.findings import Finding


def check_gguf_lora(path: Path, reader: Any, adapter: LoraAdapter,
                    base_dir: Path | None) -> tuple[object, list[Finding]]:
    """Not implemented yet."""
    raise FtdiagError(f"{path}: LoRA GGUF files are not supported yet")
