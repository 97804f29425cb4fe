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


def is_cast_of(export: SavedWeight, base: np.ndarray) -> bool:
    """Does the export hold exactly the base weight (or its cast to the saved float dtype)?"""
    we = export.values
    if np.array_equal(we, base):
        return True
    if export.dtype == "BF16":
        return bool(np.array_equal(we, bf16_round(base)))
    if export.dtype == "F16":
        return bool(np.array_equal(we, base.astype(np.float16).astype(np.float32)))
    return False


def compare_module(upd: LoraUpdate, base: SavedWeight, export: SavedWeight, *,
                   dora: bool = False) -> ModuleCheck:
    """Regress W_export − W_base on the adapter's update and classify the module."""
    wb, we = base.values, export.values
    check = ModuleCheck(upd.module, "shape", export.dtype, int(we.size))
    if we.shape != wb.shape:
        check.note = f"export {we.shape} vs base {wb.shape}"
        return check
    u = upd.delta()
    if u.shape != wb.shape:
        check.note = f"adapter update {u.shape} vs weight {wb.shape}"
        return check
    half = export.half_ulp()
    check.lost_share = float(np.count_nonzero(np.abs(u) < half)) / max(u.size, 1)
    exact_base = is_cast_of(export, wb)
    d = (we - wb).ravel()
    uf = u.ravel()
    uu, du, dd = (float(np.dot(x, y)) for x, y in ((uf, uf), (d, uf), (d, d)))
    if uu == 0.0:
        check.verdict = "base" if exact_base else "no-update"
        return check
    noise2 = float(np.dot(half.ravel(), half.ravel())) / 3.0  # Σ (2h)²/12
    scale = du / uu
    resid2 = max(dd - du * du / uu, 0.0)
    se = math.sqrt(max(resid2, noise2) / max(u.size, 1) / uu)
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
            "X003", f"{t.lost_share:.0%} of the update's elements are below half a ULP of the "
                    f"{dtypes} weights (worst: {worst[0].module} {worst[0].lost_share:.0%})",
            hint="save the merged model in float32 (or the dtype the update survives), or "
                 "quantize less; serving the adapter unmerged keeps it intact",
            overall=t.lost_share, per_module=per_module)
    return named(passed("X003", f"{t.lost_share:.1%} of the update's elements are below half "
                                f"a ULP of the {dtypes} weights", overall=t.lost_share,
                        per_module=per_module))
