"""Read a saved PEFT adapter lazily: config, weights file, tensor names and shapes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ftdiag.adapters.tensorfile import TensorFile, open_safetensors
from ftdiag.errors import FtdiagError

log = logging.getLogger(__name__)

CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
SUPPORTED_TYPES = {"LORA"}


@dataclass
class AdapterFiles:
    """What is on disk in an adapter folder (tensors are read only when asked for)."""

    path: Path
    config: dict[str, Any] | None
    weights: Path | None
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)
    _file: TensorFile | None = None
    _bin: dict[str, np.ndarray] | None = None

    @property
    def complete(self) -> bool:
        return self.config is not None and self.weights is not None

    def tensors(self, keys: list[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """(name, float32 numpy array) for `keys` (default all), read through a memory map."""
        keys = list(self.shapes) if keys is None else keys
        if self._bin is not None:
            yield from ((k, self._bin[k]) for k in keys)
        elif self._file is not None:
            yield from self._file.read(keys)

    def raw(self, key: str) -> tuple[np.ndarray, str]:
        """(tensor as stored, dtype name): a memory-map view (BF16 as uint16), no copy."""
        if self._bin is not None:
            return self._bin[key], "F32"
        assert self._file is not None
        return self._file.raw(key), self.dtypes[key]

    def release(self, keys: list[str]) -> None:
        """Drop the pages of tensors already reduced from the resident set (memory map only)."""
        if self._file is not None:
            for k in keys:
                self._file.release(k)

    def nonfinite(self, keys: list[str] | None = None) -> list[str]:
        """The keys (default all) whose tensor holds NaN/Inf, checked from the stored bits."""
        keys = list(self.shapes) if keys is None else keys
        if self._bin is not None:
            return [k for k in keys if not bool(np.isfinite(self._bin[k]).all())]
        if self._file is None:
            return []
        out = []
        for k in keys:
            if not self._file.finite(k):
                out.append(k)
            self._file.release(k)
        return out


def read_adapter(adapter_dir: str | Path) -> AdapterFiles:
    """Open an adapter folder; a missing config/weights file is reported (A001), not raised."""
    path = Path(adapter_dir).expanduser()
    if not path.exists():
        raise FtdiagError(f"adapter folder not found: {path}")
    if not path.is_dir():
        raise FtdiagError(f"{path} is a file, not an adapter folder",
                          hint="pass the folder that holds adapter_config.json")
    config = read_adapter_config(path) if (path / CONFIG_FILE).is_file() else None
    weights = next((path / n for n in WEIGHT_FILES if (path / n).is_file()), None)
    files = AdapterFiles(path, config, weights)
    if weights is not None:
        _read_index(files)
    return files


def read_adapter_config(path: Path) -> dict[str, Any]:
    """adapter_config.json as a dict; non-JSON or a non-LoRA PEFT type is a user error."""
    cfg_path = path / CONFIG_FILE
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FtdiagError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise FtdiagError(f"{cfg_path} does not hold a JSON object")
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type not in SUPPORTED_TYPES:
        raise FtdiagError(f"unsupported PEFT type {peft_type} in {cfg_path}",
                          hint="check-adapter understands LoRA adapters only")
    return config


def _read_index(files: AdapterFiles) -> None:
    """Fill names, shapes and dtypes from the weights file header."""
    assert files.weights is not None
    if files.weights.suffix == ".bin":
        files._bin, files.dtypes = _read_bin(files.weights)
        files.shapes = {k: tuple(v.shape) for k, v in files._bin.items()}
        return
    if files.weights.stat().st_size == 0:
        return  # an empty file holds no tensors: A002, not a read error
    files._file = open_safetensors(files.weights)
    for k, info in files._file.tensors.items():
        files.shapes[k] = info.shape
        files.dtypes[k] = info.dtype


def _read_bin(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A pickled state dict (adapter_model.bin) as float32 numpy arrays, and the dtypes."""
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds on a truncated/corrupt pickle
        raise FtdiagError(f"cannot read {path}: {exc}") from exc
    state = {k: v for k, v in state.items() if hasattr(v, "shape")}
    dtypes = {k: str(v.dtype).removeprefix("torch.") for k, v in state.items()}
    return {k: v.detach().float().numpy() for k, v in state.items()}, dtypes
