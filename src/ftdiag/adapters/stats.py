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
from ftdiag.adapters.tensorfile import open_safetensors, widen

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


def scaling_of(config: dict[str, Any], module: str, rank: int) -> tuple[float, float]:
    """(alpha, scaling) of one module as PEFT applies it: alpha_pattern, α/r or α/√r (rsLoRA)."""
    alpha = float(pattern_value(config.get("alpha_pattern", {}), module,
                                config.get("lora_alpha", rank)))
    root = math.sqrt(rank) if config.get("use_rslora") else rank
    return alpha, alpha / max(root, 1)


def gram(x: np.ndarray, dtype: str = "F32", *, rows: bool, wide: bool = False) -> np.ndarray:
    """x·xᵀ (rows=True: lora_A, r×in) or xᵀ·x (lora_B, out×r) as float64, from a stored tensor.

    Computed in float32 (BF16 products are exact there; only the sums round, ~1e-6 relative)
    unless `wide`. A NaN/Inf element makes its diagonal entry NaN/Inf.
    """
    if wide:
        xf = (widen(x, dtype) if x.dtype == np.uint16 else x).astype(np.float64, copy=False)
    else:
        xf = widen(x, dtype)
    g = xf @ xf.T if rows else xf.T @ xf
    return g.astype(np.float64, copy=False)


def delta_norm(a: np.ndarray, b: np.ndarray) -> float:
    """‖B·A‖_F via trace((BᵀB)(AAᵀ)): two r×r products, ΔW never materialised."""
    return _delta(gram(a, rows=True), gram(b, rows=False))


def _delta(ga: np.ndarray, gb: np.ndarray) -> float:
    return math.sqrt(max(float((gb * ga).sum()), 0.0))


def module_stat(files: AdapterFiles, mod: AdapterModule,
                config: dict[str, Any]) -> tuple[LayerStat | None, list[str]]:
    """Stats of one module (None without a 2-D A/B pair) and its keys holding NaN/Inf.

    Reads the module's tensors as stored: norms come from the Gram diagonals, whose being
    finite proves every element finite; only otherwise (or for other parts, e.g. DoRA
    magnitudes) are the bits scanned. A B is scanned for `b_zero` only if its trace is 0.
    """
    a_key = mod.keys.get("lora_A", mod.keys.get("lora_embedding_A"))
    b_key = mod.keys.get("lora_B", mod.keys.get("lora_embedding_B"))
    others = [k for k in mod.keys.values() if k not in (a_key, b_key)]
    bad = files.nonfinite(others)
    if a_key is None or b_key is None:
        return None, bad + files.nonfinite([k for k in (a_key, b_key) if k])
    (a, a_dtype), (b, b_dtype) = files.raw(a_key), files.raw(b_key)
    if a.ndim != 2 or b.ndim != 2:
        return None, bad + files.nonfinite([a_key, b_key])
    with np.errstate(over="ignore", invalid="ignore"):
        ga, gb = gram(a, a_dtype, rows=True), gram(b, b_dtype, rows=False)
    if not math.isfinite(float(np.trace(ga)) + float(np.trace(gb))):
        bad += files.nonfinite([a_key, b_key])  # NaN/Inf, or squares overflowed float32
        if not bad:
            ga, gb = gram(a, a_dtype, rows=True, wide=True), gram(b, b_dtype, rows=False,
                                                                  wide=True)
    b_sq = float(np.trace(gb))
    b_zero = not bad and b_sq == 0 and not bool(widen(b, b_dtype).any())
    files.release([a_key, b_key])
    rank = int(a.shape[0])
    alpha, scaling = scaling_of(config, mod.name, rank)
    nan = float("nan")
    stat = LayerStat(mod.name, rank, alpha, scaling, files.dtypes.get(a_key, "?"), nan, nan, nan,
                     b_zero=b_zero, finite=not bad)
    if not bad:
        stat.a_norm, stat.b_norm = math.sqrt(float(np.trace(ga))), math.sqrt(b_sq)
        if a.shape[0] == b.shape[1]:
            stat.delta_norm = _delta(ga, gb) * scaling
    return stat, bad


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
    """Per-module stats, reading and reducing one module at a time; also the NaN/Inf keys.

    Peak memory is one module's tensors in float32 whatever the file size: pages of a
    reduced module leave the resident set.
    """
    stats: list[LayerStat] = []
    bad: set[str] = set()
    for mod in modules.values():
        stat, nonfinite = module_stat(files, mod, config)
        bad.update(nonfinite)
        if stat is not None:
            stats.append(stat)
    seen = {k for m in modules.values() for k in m.keys.values()}
    bad.update(files.nonfinite([k for k in files.shapes if k not in seen]))
    return stats, [k for k in files.shapes if k in bad]


def add_ratios(stats: list[LayerStat], norms: dict[str, float]) -> None:
    """Fill w_norm and rel for modules whose base weight norm is known."""
    for s in stats:
        w = norms.get(s.module)
        if w is not None:
            s.w_norm = w
            s.rel = s.delta_norm / w if w > 0 else float("inf")
