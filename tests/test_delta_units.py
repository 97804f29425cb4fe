"""X001-X003 on weights and verdicts written here: each verdict, message and count pinned.

A 4×3 base weight and a rank-1 update of known scale: the export is built as W + U, W, W + U/2
(numpy, not ftdiag), so the verdict each must get is known before the check runs.
"""

from __future__ import annotations

import numpy as np
import pytest

from ftdiag.export import delta
from ftdiag.export.delta import (
    ModuleCheck,
    bf16_round,
    compare_module,
    diff_products,
    merged_findings,
    missing,
    precision_finding,
    sample_rows,
    totals,
)
from ftdiag.export.lora import LoraUpdate
from ftdiag.export.weights import SavedWeight
from ftdiag.findings import Finding

W = (np.arange(12, dtype=np.float32).reshape(4, 3) / 10 + 1).astype(np.float32)
A = np.array([[1.0, 2.0, 3.0]], np.float32)
B = np.array([[1.0], [3.0], [-1.0], [2.0]], np.float32)
U = (0.5 * B @ A).astype(np.float32)  # the update at scaling α/r = 0.5


def update(b: np.ndarray = B, a: np.ndarray = A, transposed: bool = False) -> LoraUpdate:
    return LoraUpdate("m", a, b, 1, 0.5, 0.5, transposed)


def saved(x: np.ndarray, dtype: str = "F32") -> SavedWeight:
    return SavedWeight(np.ascontiguousarray(x, np.float32), dtype)


# --- compare_module ---

def test_an_export_of_w_plus_u_is_merged_with_scale_one() -> None:
    c = compare_module(update(), saved(W), saved(W + U))
    assert (c.module, c.verdict, c.dtype, c.elements, c.lost_share) == ("m", "merged", "F32",
                                                                          12, 0.0)
    assert c.scale == pytest.approx(1.0, abs=1e-6) and c.rel_err == pytest.approx(0, abs=1e-6)
    assert c.cosine == pytest.approx(1.0, abs=1e-6) and c.scale_se is not None
    assert c.scale_se < 1e-6


def test_an_export_equal_to_the_base_is_base() -> None:
    c = compare_module(update(), saved(W), saved(W))
    assert (c.verdict, c.scale, c.cosine) == ("base", 0.0, 0.0)


def test_half_the_update_is_wrong_with_its_scale() -> None:
    c = compare_module(update(), saved(W), saved(W + U / 2))
    assert c.verdict == "wrong"
    assert c.scale == pytest.approx(0.5, abs=1e-6) and c.rel_err == pytest.approx(0.5, abs=1e-6)
    assert c.cosine == pytest.approx(1.0, abs=1e-6)


def test_an_update_of_the_wrong_sign_has_cosine_minus_one() -> None:
    c = compare_module(update(), saved(W), saved(W - U))
    assert c.verdict == "wrong" and c.cosine == pytest.approx(-1.0, abs=1e-6)
    assert c.rel_err == pytest.approx(2.0, abs=1e-6)


def test_a_transposed_weight_is_compared_in_its_stored_layout() -> None:
    c = compare_module(update(transposed=True), saved(W.T), saved((W + U).T))
    assert c.verdict == "merged" and c.scale == pytest.approx(1.0, abs=1e-6)


def test_shapes_that_disagree_are_named() -> None:
    c = compare_module(update(), saved(W), saved(np.zeros((4, 4))))
    assert (c.verdict, c.note, c.elements) == ("shape", "export (4, 4) vs base (4, 3)", 16)
    wide = compare_module(update(b=np.ones((5, 1), np.float32)), saved(W), saved(W))
    assert (wide.verdict, wide.note) == ("shape", "adapter update (5, 3) vs weight (4, 3)")


def test_a_zero_update_is_base_when_untouched_and_no_update_otherwise() -> None:
    zero = update(b=np.zeros_like(B))
    assert compare_module(zero, saved(W), saved(W)).verdict == "base"
    assert compare_module(zero, saved(W), saved(W + 1)).verdict == "no-update"


def test_dora_is_not_judged_by_scale() -> None:
    c = compare_module(update(), saved(W), saved(W + U), dora=True)
    assert (c.verdict, c.note) == ("dora", "DoRA rescales the weight: X002 does not apply")


def test_a_bf16_export_that_is_the_cast_base_is_base() -> None:
    cast = bf16_round(W)
    assert compare_module(update(), saved(W), saved(cast, "BF16")).verdict == "base"


def test_an_update_under_the_quantization_step_is_unresolved() -> None:
    coarse = SavedWeight(W + U, "Q8", half_step=np.full(W.shape, 10.0, np.float32))
    c = compare_module(update(), saved(W), coarse)
    assert (c.verdict, c.note) == ("unresolved", "the update is below the saved precision's noise")
    assert c.lost_share == 1.0


def test_bf16_rounding_is_to_nearest_even() -> None:
    # 1 + 2^-8 lies halfway between bf16 1.0 and 1 + 2^-7: it rounds to the even 1.0
    x = np.array([1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-9], np.float32)
    assert bf16_round(x).tolist() == [1.0, 1 + 2 * 2**-7, 1.0]


def test_sample_rows_are_all_rows_up_to_256_then_evenly_spaced() -> None:
    assert sample_rows(5).tolist() == [0, 1, 2, 3, 4]
    many = sample_rows(1000)
    assert len(many) == 256 and (many[0], many[-1]) == (0, 999)


# --- merged_findings / precision_finding ---

def mc(module: str, verdict: str, **kw: object) -> ModuleCheck:
    return ModuleCheck(module, verdict, **kw)  # type: ignore[arg-type]


def codes(findings: list[Finding]) -> dict[str, Finding]:
    return {f.code: f for f in findings}


def test_x001_fails_when_every_judged_module_is_the_base() -> None:
    checks = [mc(f"m{i}", "base") for i in range(4)] + [mc("u", "unresolved")]
    x = codes(merged_findings(checks))
    assert x["X001"] == Finding(
        "X001", "fail", "all 4 adapted modules hold the base weights (e.g. m0, m1, m2 (+1 more))",
        "the merge or conversion wrote the base: merge with merge_and_unload() and save the "
        "returned model, then convert that folder", {"modules": 4})
    assert x["X002"] == Finding("X002", "skip", "skipped: no merged module to compare")


def test_x001_and_x002_pass_on_merged_modules_with_the_scale_range() -> None:
    checks = [mc("a", "merged", scale=0.99), mc("b", "merged", scale=1.012)]
    x = codes(merged_findings(checks))
    assert x["X001"] == Finding("X001", "pass", "2/2 adapted modules differ from the base",
                                check="export differs from base")
    assert x["X002"] == Finding("X002", "pass", "2 modules equal base + (α/r)·B·A (fitted scale "
                                "0.990–1.012)", check="export delta = (α/r)·B·A")


def test_x001_skips_when_nothing_was_judged() -> None:
    x = codes(merged_findings([mc("u", "unresolved")]))
    assert x["X001"] == Finding("X001", "skip", "skipped: no module could be judged")


def test_x002_partial_merge_names_the_base_modules() -> None:
    checks = [mc("a", "merged", scale=1.0), mc("b", "merged", scale=1.0), mc("c", "base")]
    x = codes(merged_findings(checks))
    assert x["X001"].status == "pass" and x["X001"].message == \
        "2/3 adapted modules differ from the base"
    assert x["X002"] == Finding(
        "X002", "fail", "1 modules hold the base while 2 are merged (c)",
        "merge this adapter with PEFT's merge_and_unload() (it applies α/r, α/√r for rsLoRA, and "
        "the fan_in_fan_out transpose) and export again",
        {"wrong": [], "base_like": ["c"], "missing": []})


def test_x002_names_the_worst_wrong_module_and_the_missing_ones() -> None:
    checks = [mc("ok", "merged", scale=1.0),
              mc("w1", "wrong", scale=0.9, rel_err=0.1, cosine=0.99),
              mc("w2", "wrong", scale=0.75, rel_err=0.25, cosine=0.5),
              mc("gone", "missing"), mc("odd", "shape")]
    x002 = codes(merged_findings(checks))["X002"]
    assert x002.message == ("2 modules differ from base + (α/r)·B·A (e.g. w2: scale 0.750, rel. "
                            "error 0.250, cosine 0.500); 2 modules missing or of another shape "
                            "(gone, odd)")
    assert x002.evidence == {"wrong": ["w1", "w2"], "base_like": [], "missing": ["gone", "odd"]}


def test_x002_evidence_lists_fifty_modules() -> None:
    checks = [mc(f"w{i}", "wrong", scale=0.5, rel_err=0.5, cosine=1.0) for i in range(51)]
    x002 = codes(merged_findings(checks))["X002"]
    assert len(x002.evidence["wrong"]) == 50 and x002.message.startswith("51 modules differ")


def test_x002_skips_for_dora() -> None:
    x = codes(merged_findings([mc("a", "dora")], dora=True))
    assert x["X002"] == Finding("X002", "skip", "skipped: DoRA merges rescale the weight (X002 "
                                "covers plain LoRA)")


def test_totals_weigh_the_lost_share_by_elements() -> None:
    checks = [mc("a", "merged", dtype="F16", elements=100, lost_share=0.2),
              mc("b", "merged", dtype="BF16", elements=300, lost_share=0.6),
              mc("c", "missing")]
    t = totals(checks)
    assert (t.modules, t.by_verdict, t.dtypes) == (3, {"merged": 2, "missing": 1},
                                                   ["BF16", "F16"])
    assert t.lost_share == pytest.approx(0.5)


def test_x003_warns_at_half_the_update_lost() -> None:
    checks = [mc("a", "merged", dtype="F16", elements=100, lost_share=0.2),
              mc("b", "merged", dtype="BF16", elements=300, lost_share=0.6)]
    assert precision_finding(checks) == Finding(
        "X003", "warn", "50.0% of the update's elements are below half a ULP of the BF16/F16 "
        "weights (worst: b 60.0%)", "save the merged model in float32 (or the dtype the update "
        "survives), or quantize less; serving the adapter unmerged keeps it intact",
        {"overall": pytest.approx(0.5), "per_module": {"b": 0.6, "a": 0.2}})


def test_x003_passes_just_under_half() -> None:
    checks = [mc("a", "merged", dtype="F32", elements=1000, lost_share=0.49987)]
    assert precision_finding(checks) == Finding(
        "X003", "pass", "50.0% of the update's elements are below half a ULP of the F32 weights",
        "", {"overall": 0.49987, "per_module": {"a": 0.4999}},
        check="update survives saved dtype")


def test_x003_skips_without_compared_elements() -> None:
    assert precision_finding([mc("a", "missing")]) == Finding(
        "X003", "skip", "skipped: no module compared")
    assert precision_finding([mc("a", "merged", lost_share=0.3)]).status == "skip"


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bit patterns (uint16), rounded to nearest even like a bf16 save."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def test_diff_products_of_two_bf16_tensors_equal_the_float_difference() -> None:
    base, export = bf16_bits(W), bf16_bits(W + U)
    widen = [(b.astype(np.uint32) << 16).view(np.float32) for b in (base, export)]
    d = (widen[1] - widen[0]).astype(np.float64)
    dd, bdt = diff_products(SavedWeight(base, "BF16"), SavedWeight(export, "BF16"), B, False)
    assert dd == pytest.approx(float((d * d).sum()))
    assert bdt == pytest.approx(d.T @ B)
    dd_t, bdt_t = diff_products(SavedWeight(base.T.copy(), "BF16"),
                                SavedWeight(export.T.copy(), "BF16"), B, True)
    assert dd_t == pytest.approx(dd) and bdt_t == pytest.approx(d.T @ B)


def test_a_bf16_export_of_w_plus_u_over_a_bf16_base_is_merged() -> None:
    c = compare_module(update(), SavedWeight(bf16_bits(W), "BF16"),
                       SavedWeight(bf16_bits(W + U), "BF16"))
    assert c.verdict == "merged" and c.scale == pytest.approx(1.0, abs=0.01)


def test_diff_products_walk_blocks_of_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of one row each (BLOCK = 3 elements): the sums are the same as in one block."""
    whole = diff_products(saved(W), saved(W + U), B, False)
    monkeypatch.setattr(delta, "BLOCK", 3)
    rows = diff_products(saved(W), saved(W + U), B, False)
    bf16 = diff_products(SavedWeight(bf16_bits(W), "BF16"),
                         SavedWeight(bf16_bits(W + U), "BF16"), B, False)
    assert rows[0] == pytest.approx(whole[0]) and rows[1] == pytest.approx(whole[1])
    assert bf16[0] == pytest.approx(whole[0], rel=0.05)


def test_a_missing_module_names_where_it_is_missing() -> None:
    assert missing("m", "export") == ModuleCheck("m", "missing", note="no weight in the export")


def tiny_update() -> LoraUpdate:
    """An update far below half a bf16/f16 step of W (|U| ≤ 1e-7 against W ≈ 1–2)."""
    return LoraUpdate("m", A, B, 1, 1e-8, 1e-8, False)


@pytest.mark.parametrize("dtype", ["BF16", "F16"])
def test_an_export_that_is_exactly_the_cast_base_is_base_not_unresolved(dtype: str) -> None:
    cast = bf16_round(W) if dtype == "BF16" else W.astype(np.float16).astype(np.float32)
    assert compare_module(tiny_update(), saved(W), saved(cast, dtype)).verdict == "base"


@pytest.mark.parametrize("row", [0, 3])
def test_a_half_precision_export_one_step_off_the_cast_is_not_the_base(row: int) -> None:
    cast = bf16_round(W)
    cast[row, 1] = bf16_round(cast[row, 1:2] * 1.01)[0]  # one element a few bf16 steps away
    assert compare_module(tiny_update(), saved(W), saved(cast, "BF16")).verdict != "base"


def test_x001_names_three_modules_without_more() -> None:
    x001 = codes(merged_findings([mc(f"m{i}", "base") for i in range(3)]))["X001"]
    assert x001.message == "all 3 adapted modules hold the base weights (e.g. m0, m1, m2)"


def test_x002_a_missing_module_alone_is_named() -> None:
    x002 = codes(merged_findings([mc("a", "merged", scale=1.0), mc("gone", "missing")]))["X002"]
    assert x002.message == "1 modules missing or of another shape (gone)"


def test_x002_lists_fifty_base_like_and_missing_modules() -> None:
    checks = ([mc("ok", "merged", scale=1.0)] + [mc(f"b{i}", "base") for i in range(51)]
              + [mc(f"x{i}", "missing") for i in range(51)])
    x002 = codes(merged_findings(checks))["X002"]
    assert len(x002.evidence["base_like"]) == 50 and len(x002.evidence["missing"]) == 50


def test_x003_a_module_that_lost_nothing_shows_zero() -> None:
    checks = [mc("a", "merged", dtype="F32", elements=10, lost_share=0.0),
              mc("b", "merged", dtype="F32", elements=10, lost_share=0.1)]
    assert precision_finding(checks).evidence["per_module"] == {"b": 0.1, "a": 0.0}


# --- the noise model: a stored step h per element gives noise² = Σ h²/3 ---

X = np.array([3.0, -1.0, 0.0, 0.0], np.float32)  # orthogonal to B's column (1, 3, -1, 2)
Y = np.ones(3, np.float32)


def extra(norm2: float) -> np.ndarray:
    """A weight change orthogonal to U (⟨E, U⟩ = 0) with ‖E‖² = norm2 (‖x‖² 10, ‖y‖² 3)."""
    return (np.sqrt(norm2 / 30) * np.outer(X, Y)).astype(np.float32)


def stepped(x: np.ndarray, h: float) -> SavedWeight:
    """A quantized-like export whose every element has half-step h (noise² = 12·h²/3)."""
    return SavedWeight(np.ascontiguousarray(x, np.float32), "Q8_0",
                       np.full(x.shape, h, np.float32))


UU = 0.25 * 15 * 14  # ‖U‖² = (1/2)² ‖b‖² ‖a‖²


def test_an_extra_change_orthogonal_to_u_is_wrong_though_the_scale_is_one() -> None:
    c = compare_module(update(), saved(W), saved(W + U + extra(0.3)))
    assert c.verdict == "wrong" and c.scale == pytest.approx(1.0, abs=1e-5)
    assert c.rel_err == pytest.approx((0.3 / UU) ** 0.5, rel=1e-3)
    assert c.cosine == pytest.approx((UU / (UU + 0.3)) ** 0.5, rel=1e-4)
    assert c.scale_se == pytest.approx((0.3 / 12 / UU) ** 0.5, rel=1e-3)


def test_the_tolerance_is_four_standard_errors_of_the_rounding_noise() -> None:
    """h = 0.5: noise² 1, s.e. √(1/12/52.5) = 0.0398, tolerance 0.159: 1.1 is merged, 1.18 not."""
    assert compare_module(update(), saved(W), stepped(W + 1.1 * U, 0.5)).verdict == "merged"
    off = compare_module(update(), saved(W), stepped(W + 1.18 * U, 0.5))
    assert off.verdict == "wrong" and off.scale_se == pytest.approx((1 / 12 / UU) ** 0.5, rel=1e-3)


def test_a_tolerance_of_half_or_more_is_unresolved() -> None:
    """h = 3: noise² 36, tolerance 4·√(36/630) = 0.96."""
    assert compare_module(update(), saved(W), stepped(W + U, 3.0)).verdict == "unresolved"


def test_within_the_noise_the_base_is_told_from_the_merge_by_the_scale() -> None:
    """h = 1.5: noise² 9, tolerance 0.478; ‖U‖² 52.5 and ‖E‖² 4 are both under 9·noise²."""
    assert compare_module(update(), saved(W), stepped(W + U, 1.5)).verdict == "merged"
    assert compare_module(update(), saved(W), stepped(W + extra(4), 1.5)).verdict == "base"
    assert compare_module(update(), saved(W), stepped(W + U + extra(4), 1.5)).verdict == "merged"


def test_a_residual_just_over_nine_noise_squared_is_wrong() -> None:
    """h = 0.5: noise² 1; a residual of 9.5 is over 9 (tolerance 4·√(9.5/630) = 0.49)."""
    assert compare_module(update(), saved(W), stepped(W + extra(9.5), 0.5)).verdict == "wrong"
    assert compare_module(update(), saved(W), stepped(W + U + extra(9.5), 0.5)).verdict == \
        "wrong"


def test_the_noise_of_sampled_rows_is_scaled_to_every_row() -> None:
    """300 rows, 256 sampled: noise² = 256·3·h²/3 · 300/256 = 75 for h = 0.5."""
    w = np.tile(W, (75, 1)).astype(np.float32)
    b = np.tile(B, (75, 1)).astype(np.float32)
    u = (0.5 * b @ A).astype(np.float32)
    uu = 0.25 * float((b * b).sum()) * 14
    c = compare_module(update(b=b), saved(w), stepped(w + 1.1 * u, 0.5))
    assert c.scale_se == pytest.approx((75 / 900 / uu) ** 0.5, rel=1e-3)
    assert c.lost_share == 0.0 and c.verdict == "wrong"


def test_x003_names_the_module_that_lost_most_even_next_to_one_that_lost_nothing() -> None:
    checks = [mc("a", "merged", dtype="BF16", elements=10, lost_share=0.0),
              mc("b", "merged", dtype="BF16", elements=90, lost_share=0.9)]
    assert precision_finding(checks).message.endswith("(worst: b 90.0%)")
