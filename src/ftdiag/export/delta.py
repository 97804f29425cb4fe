"""X001-X003: does each exported weight equal base + (α/r)·B·A, in the precision it was saved in?

Per module, D = W_export − W_base is regressed on the update U = scaling·B·A: the fitted
`scale` is ≈1 for a correct merge and ≈0 for the base, with a standard error set by the
rounding noise of the saved dtype (half a ULP, or half a quantization step, per element).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ftdiag.export.lora import LoraUpdate
from ftdiag.export.weights import SavedWeight
from ftdiag.findings import Finding, finding, passed

Verdict = Literal["merged", "base", "wrong", "unresolved", "missing", "shape", "no-update",
                  "dora"]
BLOCK = 1 << 18  # elements per block of rows (1 MiB of float32)
SAMPLE_ROWS = 256  # rows per module for the X003 share and the noise estimate
MIN_TOL = 0.02  # |scale − 1| (or |scale|) tolerated even without noise
LOST_MOST = 0.5  # X003 fires when this share of the update's elements rounds away


@dataclass
class ModuleCheck:
    """How one adapted module came out in the export."""

    module: str
    verdict: Verdict
    dtype: str = ""
    elements: int = 0
    scale: float | None = None  # <D,U>/<U,U>: 1 merged, 0 base
    scale_se: float | None = None
    rel_err: float | None = None  # ‖D − U‖/‖U‖
    cosine: float | None = None  # cos(D, U)
    lost_share: float | None = None  # share of U's elements below half a ULP of W
    note: str = ""


@dataclass
class MergedTotals:
    """Counts over modules and the update share lost to the saved precision."""

    modules: int = 0
    by_verdict: dict[str, int] = field(default_factory=dict)
    lost_share: float | None = None
    dtypes: list[str] = field(default_factory=list)


def bf16_round(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to bfloat16 (nearest even), returned as float32."""
    u = x.astype(np.float32).view(np.uint32)
    u = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return u.view(np.float32)


def is_cast_of(export: SavedWeight, base: SavedWeight) -> bool:
    """Does a half-precision export hold exactly the base weight cast to its dtype?"""
    if export.dtype not in ("BF16", "F16"):
        return False
    first = slice(0, 1)
    if not np.array_equal(export.rows(first), cast(base.rows(first), export.dtype)):
        return False  # the first row already differs after the cast
    return bool(np.array_equal(export.values, cast(base.values, export.dtype)))


def cast(x: np.ndarray, dtype: str) -> np.ndarray:
    """`x` rounded to a half-precision dtype, as float32."""
    if dtype == "BF16":
        return bf16_round(x)
    return x.astype(np.float16).astype(np.float32)


def compare_module(upd: LoraUpdate, base: SavedWeight, export: SavedWeight, *,
                   dora: bool = False) -> ModuleCheck:
    """Regress W_export − W_base on the adapter's update and classify the module.

    <U,U> and <D,U> are computed through the rank-r factors, so the full update is never
    built; the X003 share and the rounding noise are measured on up to SAMPLE_ROWS rows.
    """
    check = ModuleCheck(upd.module, "shape", export.dtype, int(np.prod(export.shape)))
    if export.shape != base.shape:
        check.note = f"export {export.shape} vs base {base.shape}"
        return check
    a_s = upd.a * np.float32(upd.scaling)
    shape = (a_s.shape[1], upd.b.shape[0]) if upd.transposed else (upd.b.shape[0], a_s.shape[1])
    if shape != base.shape:
        check.note = f"adapter update {shape} vs weight {base.shape}"
        return check
    dd, bdt = diff_products(base, export, upd.b, upd.transposed)
    exact_base = dd == 0.0 or is_cast_of(export, base)
    du = float(np.sum(bdt * a_s.T))
    uu = float(np.sum((upd.b.T.astype(np.float64) @ upd.b) * (a_s.astype(np.float64) @ a_s.T)))
    rows = sample_rows(base.shape[0])
    u_rows = (a_s[:, rows].T @ upd.b.T) if upd.transposed else upd.b[rows] @ a_s
    lost, noise_rows = export.sample(rows).lost_and_noise(u_rows)
    check.lost_share = lost / max(u_rows.size, 1)
    noise2 = noise_rows * base.shape[0] / len(rows)
    if uu == 0.0:
        check.verdict = "base" if exact_base else "no-update"
        return check
    scale = du / uu
    resid2 = max(dd - du * du / uu, 0.0)
    se = math.sqrt(max(resid2, noise2) / max(check.elements, 1) / uu)
    check.scale, check.scale_se = scale, se
    check.rel_err = math.sqrt(max(dd - 2 * du + uu, 0.0) / uu)
    check.cosine = du / math.sqrt(dd * uu) if dd > 0 else 0.0
    tol = max(MIN_TOL, 4 * se)
    if exact_base:
        check.verdict = "base"
    elif dora:
        check.verdict, check.note = "dora", "DoRA rescales the weight: X002 does not apply"
    elif tol >= 0.5:
        check.verdict = "unresolved"
        check.note = "the update is below the saved precision's noise"
    elif abs(scale) <= tol and dd <= 9 * noise2:
        check.verdict = "base"
    elif abs(scale - 1) <= tol and resid2 <= 9 * noise2 + 1e-6 * uu:
        check.verdict = "merged"
    else:
        check.verdict = "wrong"
    return check


def diff_products(base: SavedWeight, export: SavedWeight, b: np.ndarray,
                  transposed: bool) -> tuple[float, np.ndarray]:
    """‖D‖² and (Bᵀ·D)ᵀ [in, r] for D = W_export − W_base, a block of rows at a time.

    Blocks of about BLOCK elements stay in cache: the stored tensors are read once.
    """
    n_rows, n_cols = base.shape
    step = max(1, BLOCK // max(n_cols, 1))
    dd = 0.0
    bdt = np.zeros((n_rows, b.shape[1]) if transposed else (n_cols, b.shape[1]), np.float64)
    both_bf16 = export.raw.dtype == base.raw.dtype == np.uint16
    bufs = [np.empty(step * n_cols, np.uint32) for _ in range(2)] if both_bf16 else []
    for start in range(0, n_rows, step):
        block = slice(start, min(start + step, n_rows))
        d = (_bf16_diff(export.raw[block], base.raw[block], bufs) if both_bf16
             else export.rows(block) - base.rows(block))
        dd += float(np.dot(d.ravel(), d.ravel()))
        if transposed:  # stored [in, out]: rows of D·B are rows of the result
            bdt[block] = d @ b
        else:  # stored [out, in]: Bᵀ·D sums over the rows (this operand order is fast)
            bdt += d.T @ b[block]
    return dd, bdt


def _bf16_diff(export: np.ndarray, base: np.ndarray, bufs: list[np.ndarray]) -> np.ndarray:
    """export − base (bfloat16 bits) as float32, widened into reused buffers: fresh 1 MiB
    temporaries per block cost a page fault per 4 KiB (a quarter of the pass's CPU time)."""
    k = export.size
    e, b = (buf[:k].reshape(export.shape) for buf in bufs)
    np.left_shift(export, 16, out=e, dtype=np.uint32)
    np.left_shift(base, 16, out=b, dtype=np.uint32)
    d = e.view(np.float32)
    return np.subtract(d, b.view(np.float32), out=d)


def sample_rows(n: int) -> np.ndarray:
    """Evenly spaced row indices, all rows when there are at most SAMPLE_ROWS."""
    return np.unique(np.linspace(0, n - 1, min(n, SAMPLE_ROWS)).astype(np.int64))


def missing(module: str, where: str) -> ModuleCheck:
    return ModuleCheck(module, "missing", note=f"no weight in the {where}")


def totals(checks: list[ModuleCheck]) -> MergedTotals:
    by: dict[str, int] = {}
    for c in checks:
        by[c.verdict] = by.get(c.verdict, 0) + 1
    sized = [c for c in checks if c.lost_share is not None]
    n = sum(c.elements for c in sized)
    lost = sum(c.lost_share * c.elements for c in sized if c.lost_share is not None)
    return MergedTotals(len(checks), by, lost / n if n else None,
                        sorted({c.dtype for c in checks if c.dtype}))


PASS_NAMES = {"X001": "export differs from base", "X002": "export delta = (α/r)·B·A",
              "X003": "update survives saved dtype"}


def named(f: Finding) -> Finding:
    """A passing row named for what it proves (not the failure's title)."""
    f.check = PASS_NAMES.get(f.code, f.check)
    return f


def _names(checks: list[ModuleCheck], limit: int = 3) -> str:
    names = [c.module for c in checks[:limit]]
    return ", ".join(names) + (f" (+{len(checks) - limit} more)" if len(checks) > limit else "")


def merged_findings(checks: list[ModuleCheck], *, dora: bool = False) -> list[Finding]:
    """X001, X002 and X003 from the per-module comparisons."""
    by = {v: [c for c in checks if c.verdict == v] for v in
          ("merged", "base", "wrong", "unresolved", "missing", "shape", "dora")}
    judged = by["merged"] + by["base"] + by["wrong"]
    out: list[Finding] = []
    if judged and len(by["base"]) == len(judged):
        out.append(finding(
            "X001", f"all {len(judged)} adapted modules hold the base weights "
                    f"(e.g. {_names(by['base'])})",
            hint="the merge or conversion wrote the base: merge with merge_and_unload() and "
                 "save the returned model, then convert that folder",
            modules=len(judged)))
    elif judged:
        out.append(named(passed("X001", f"{len(judged) - len(by['base'])}/{len(judged)} "
                                        "adapted modules differ from the base")))
    else:
        out.append(Finding("X001", "skip", "skipped: no module could be judged"))
    bad = by["wrong"] + by["missing"] + by["shape"]
    partial = by["base"] if by["base"] and by["merged"] else []
    if dora:
        out.append(Finding("X002", "skip", "skipped: DoRA merges rescale the weight "
                                           "(X002 covers plain LoRA)"))
    elif bad or partial:
        parts = []
        if by["wrong"]:
            worst = max(by["wrong"], key=lambda c: c.rel_err or 0.0)
            parts.append(f"{len(by['wrong'])} modules differ from base + (α/r)·B·A "
                         f"(e.g. {worst.module}: scale {worst.scale:.3f}, "
                         f"rel. error {worst.rel_err:.3f}, cosine {worst.cosine:.3f})")
        if partial:
            parts.append(f"{len(partial)} modules hold the base while {len(by['merged'])} "
                         f"are merged ({_names(partial)})")
        if by["missing"] or by["shape"]:
            parts.append(f"{len(by['missing']) + len(by['shape'])} modules missing or of "
                         f"another shape ({_names(by['missing'] + by['shape'])})")
        out.append(finding(
            "X002", "; ".join(parts),
            hint="merge this adapter with PEFT's merge_and_unload() (it applies α/r, "
                 "α/√r for rsLoRA, and the fan_in_fan_out transpose) and export again",
            wrong=[c.module for c in by["wrong"]][:50],
            base_like=[c.module for c in partial][:50],
            missing=[c.module for c in by["missing"] + by["shape"]][:50]))
    elif by["merged"]:
        scales = [c.scale for c in by["merged"] if c.scale is not None]
        out.append(named(passed("X002", f"{len(by['merged'])} modules equal base + (α/r)·B·A "
                                        f"(fitted scale {min(scales):.3f}–{max(scales):.3f})")))
    else:
        out.append(Finding("X002", "skip", "skipped: no merged module to compare"))
    out.append(precision_finding(checks))
    return out


def precision_finding(checks: list[ModuleCheck]) -> Finding:
    """X003: the share of the update's elements the saved dtype rounds away."""
    t = totals(checks)
    if t.lost_share is None:
        return Finding("X003", "skip", "skipped: no module compared")
    dtypes = "/".join(t.dtypes)
    worst = sorted((c for c in checks if c.lost_share is not None),
                   key=lambda c: -(c.lost_share or 0.0))
    per_module = {c.module: round(c.lost_share or 0.0, 4) for c in worst}
    if t.lost_share >= LOST_MOST:
        return finding(
            "X003", f"{t.lost_share:.1%} of the update's elements are below half a ULP of the "
                    f"{dtypes} weights (worst: {worst[0].module} {worst[0].lost_share:.1%})",
            hint="save the merged model in float32 (or the dtype the update survives), or "
                 "quantize less; serving the adapter unmerged keeps it intact",
            overall=t.lost_share, per_module=per_module)
    return named(passed("X003", f"{t.lost_share:.1%} of the update's elements are below half "
                                f"a ULP of the {dtypes} weights", overall=t.lost_share,
                        per_module=per_module))
