"""Per-layer LoRA statistics: norms, rank, scaling, relative update ‖ΔW‖/‖W‖ (no ΔW built)."""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ftdiag.adapters.files import AdapterFiles
from ftdiag.adapters.keys import AdapterModule, BaseLayout
from ftdiag.adapters.tensorfile import open_safetensors

log = logging.getLogger(__name__)


@dataclass
class LayerStat:
    """What one adapted module's LoRA pair does, from the file alone (plus ‖W‖ when known)."""

    module: str
    rank: int
    alpha: float
    scaling: float
    dtype: str
    a_norm: float
    b_norm: float
    delta_norm: float  # ‖scaling · B·A‖_F
    w_norm: float | None = None
    rel: float | None = None  # delta_norm / w_norm
    b_zero: bool = False
    finite: bool = True


def pattern_value(patterns: dict[str, Any], name: str, default: Any) -> Any:
    """PEFT's rank_pattern/alpha_pattern lookup: a key matches a module-name suffix (regex)."""
    for pat, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({pat})$", name):
            return value
    return default


def delta_norm(a: np.ndarray, b: np.ndarray) -> float:
    """‖B·A‖_F via trace((BᵀB)(AAᵀ)): two r×r products, ΔW never materialised."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    sq = float(((b64.T @ b64) * (a64 @ a64.T)).sum())
    return math.sqrt(max(sq, 0.0))


def layer_stat(mod: AdapterModule, tensors: dict[str, np.ndarray], config: dict[str, Any],
               dtype: str, finite: bool) -> LayerStat | None:
    """Stats of one module, or None when it has no complete A/B pair."""
    a = tensors.get("lora_A", tensors.get("lora_embedding_A"))
    b = tensors.get("lora_B", tensors.get("lora_embedding_B"))
    if a is None or b is None or a.ndim != 2 or b.ndim != 2:
        return None
    rank = int(a.shape[0])
    alpha = float(pattern_value(config.get("alpha_pattern", {}), mod.name,
                                config.get("lora_alpha", rank)))
    scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / max(rank, 1)
    ok = finite and a.shape[0] == b.shape[1]
    dn = delta_norm(a, b) * scaling if ok else float("nan")
    norm = (lambda x: float(np.linalg.norm(x))) if finite else (lambda x: float("nan"))
    return LayerStat(mod.name, rank, alpha, scaling, dtype, norm(a), norm(b), dn,
                     b_zero=finite and not bool(b.any()), finite=finite)


def base_weight_index(model_dir: Path) -> dict[str, Path]:
    """Tensor name -> safetensors file of the base ({} when it has no safetensors weights)."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        return {k: model_dir / v for k, v in weight_map.items() if (model_dir / v).is_file()}
    single = model_dir / "model.safetensors"
    if not single.is_file():
        return {}
    return dict.fromkeys(open_safetensors(single).tensors, single)


def base_norms(layout: BaseLayout, modules: list[str]) -> dict[str, float]:
    """‖W‖_F of the given base modules, reading only those tensors from the safetensors files."""
    index = base_weight_index(layout.model_dir)
    wanted: dict[Path, dict[str, str]] = {}
    for name in modules:
        for key in (f"{name}.weight", f"{name.partition('.')[2]}.weight"):
            if key in index:
                wanted.setdefault(index[key], {})[key] = name
                break
    norms: dict[str, float] = {}
    for path, keys in wanted.items():
        for key, w in open_safetensors(path).read(list(keys)):
            norms[keys[key]] = float(np.linalg.norm(w.astype(np.float64, copy=False)))
    return norms


def compute_stats(files: AdapterFiles, modules: dict[str, AdapterModule],
                  config: dict[str, Any]) -> tuple[list[LayerStat], list[str]]:
    """Per-module stats over the whole file; also the keys holding NaN/Inf."""
    stats: list[LayerStat] = []
    nonfinite: list[str] = []
    by_key = {k: (m, part) for m in modules.values() for part, k in m.keys.items()}
    current: dict[str, dict[str, np.ndarray]] = {}
    for key, t in files.tensors():
        if t.size and not bool(np.isfinite(t).all()):
            nonfinite.append(key)
        if key in by_key:
            mod, part = by_key[key]
            current.setdefault(mod.name, {})[part] = t
    bad = set(nonfinite)
    for name, mod in modules.items():
        first = mod.keys.get("lora_A") or next(iter(mod.keys.values()))
        stat = layer_stat(mod, current.get(name, {}), config, files.dtypes.get(first, "?"),
                          finite=not bad & set(mod.keys.values()))
        if stat is not None:
            stats.append(stat)
    return stats, nonfinite


def add_ratios(stats: list[LayerStat], norms: dict[str, float]) -> None:
    """Fill w_norm and rel for modules whose base weight norm is known."""
    for s in stats:
        w = norms.get(s.module)
        if w is not None:
            s.w_norm = w
            s.rel = s.delta_norm / w if w > 0 else float("inf")
