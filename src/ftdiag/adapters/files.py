"""Read a saved PEFT adapter lazily: config, weights file, tensor names and shapes."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ftdiag.adapters.keys import check_patterns, group_lora_keys
from ftdiag.adapters.tensorfile import TensorFile, open_safetensors
from ftdiag.errors import FtdiagError
from ftdiag.safeio import read_json

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
    if config is not None and files.shapes:
        check_patterns(config, list(group_lora_keys(list(files.shapes))[0]))
    return files


def read_adapter_config(path: Path) -> dict[str, Any]:
    """adapter_config.json as a dict, its fields' types checked; a file that is not JSON, a
    field PEFT would misread or a non-LoRA PEFT type is a user error."""
    cfg_path = path / CONFIG_FILE
    config = read_json(cfg_path)
    if not isinstance(config, dict):
        raise FtdiagError(f"{cfg_path} does not hold a JSON object")
    raw_type = config.get("peft_type", "LORA")
    peft_type = raw_type.upper() if isinstance(raw_type, str) else _short(raw_type)
    if peft_type not in SUPPORTED_TYPES:
        raise FtdiagError(f"unsupported PEFT type {peft_type} in {cfg_path}",
                          hint="check-adapter understands LoRA adapters only")
    for key, (valid, want) in FIELD_TYPES.items():
        value = config.get(key)
        if ((key in config and key in NOT_NULL) or value is not None) and not valid(value):
            raise FtdiagError(f"{cfg_path}: {key} is {_short(value)}, PEFT expects {want}",
                              hint="PEFT's LoraConfig would fail on it or misread it; re-save "
                                   "the adapter or fix the field")
    return config


def _number(x: Any) -> bool:
    try:
        return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
    except OverflowError:  # an integer past float's range
        return False


def _integer(x: Any) -> bool:
    return _number(x) and float(x).is_integer()


def _names(x: Any) -> bool:
    return isinstance(x, list) and all(isinstance(n, str) for n in x)


def _patterns(valid: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda x: isinstance(x, dict) and all(valid(v) for v in x.values())


# The fields ftdiag reads, as PEFT's LoraConfig types them in JSON (null allowed but for NOT_NULL).
NOT_NULL = {"r", "lora_alpha"}
FIELD_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "r": (_integer, "an integer"),
    "lora_alpha": (_number, "a number"),
    "target_modules": (lambda x: isinstance(x, str) or _names(x), "a regex or a list of names"),
    "exclude_modules": (lambda x: isinstance(x, str) or _names(x), "a regex or a list of names"),
    "modules_to_save": (_names, "a list of names"),
    "layers_to_transform": (lambda x: _integer(x) or (isinstance(x, list) and all(
        _integer(i) for i in x)), "a layer index or a list of them"),
    "rank_pattern": (_patterns(_integer), "an object of regex: integer"),
    "alpha_pattern": (_patterns(_number), "an object of regex: number"),
    "base_model_name_or_path": (lambda x: isinstance(x, str), "a string"),
    "revision": (lambda x: isinstance(x, str), "a string"),
}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "…"


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
