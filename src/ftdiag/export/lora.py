"""The update each adapted module should add to its base weight: (α/r)·B·A, as PEFT merges it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ftdiag.adapters.files import read_adapter
from ftdiag.adapters.keys import group_lora_keys
from ftdiag.adapters.stats import scaling_of
from ftdiag.errors import FtdiagError


@dataclass
class LoraUpdate:
    """One module's LoRA pair and how PEFT folds it into the stored weight."""

    module: str
    a: np.ndarray  # [r, in] (embeddings: [r, vocab])
    b: np.ndarray  # [out, r] (embeddings: [dim, r])
    rank: int
    alpha: float
    scaling: float
    transposed: bool  # stored weight is [in, out]: fan_in_fan_out / Conv1D / embedding

    def delta(self) -> np.ndarray:
        """scaling·B·A in the layout of the stored weight (float32)."""
        d = self.b @ (self.a * np.float32(self.scaling))
        return np.ascontiguousarray(d.T) if self.transposed else d


@dataclass
class LoraAdapter:
    """A PEFT LoRA adapter as its per-module updates plus the config fields exports must keep."""

    path: Path
    config: dict[str, Any]
    updates: dict[str, LoraUpdate]

    @property
    def dora(self) -> bool:
        return bool(self.config.get("use_dora"))


def read_lora(adapter_dir: Path | str) -> LoraAdapter:
    """Read every complete lora_A/lora_B pair of an adapter folder (the file is memory-mapped)."""
    files = read_adapter(adapter_dir)
    if files.config is None or files.weights is None:
        raise FtdiagError(f"{files.path} is not a complete adapter folder (A001)",
                          hint="it needs adapter_config.json and adapter_model.safetensors; "
                               "run `ftdiag check-adapter` on it")
    modules, _other = group_lora_keys(list(files.shapes))
    wanted = [k for m in modules.values() for k in m.keys.values()]
    tensors = dict(files.tensors(wanted))
    fan_in_fan_out = bool(files.config.get("fan_in_fan_out"))
    updates: dict[str, LoraUpdate] = {}
    for name, mod in modules.items():
        emb = "lora_embedding_A" in mod.keys
        a = tensors.get(mod.keys.get("lora_embedding_A" if emb else "lora_A", ""))
        b = tensors.get(mod.keys.get("lora_embedding_B" if emb else "lora_B", ""))
        if a is None or b is None or a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            continue
        rank = int(a.shape[0])
        alpha, scaling = scaling_of(files.config, name, rank)
        updates[name] = LoraUpdate(name, a, b, rank, alpha, scaling, emb or fan_in_fan_out)
    if not updates:
        raise FtdiagError(f"no lora_A/lora_B pairs in {files.weights} (A002)",
                          hint="run `ftdiag check-adapter` on the adapter")
    return LoraAdapter(files.path, files.config, updates)
