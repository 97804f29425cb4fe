"""X004's parts on pairs written here: rank, llama.cpp's alpha/r, values, q/k rows, the hint.

The GGUF side is numpy arrays (and, for the whole check, a stand-in reader holding F32 tensors
and metadata), so each mismatch is planted by hand. The q/k row order for 2 heads of 4 rows is
written out from llama.cpp's convert script: [0, 2, 1, 3, 4, 6, 5, 7].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ftdiag.export.gguf_lora import (
    GgufLoraCheck,
    _finding,
    _hint,
    base_config,
    check_gguf_lora,
    compare_pair,
    name_map,
    q_k_heads,
    rel,
)
from ftdiag.export.lora import LoraAdapter, LoraUpdate
from ftdiag.findings import Finding

A = np.arange(12, dtype=np.float32).reshape(4, 3) + 1  # r 4, in 3
B = np.arange(32, dtype=np.float32).reshape(8, 4) + 1  # out 8, r 4
QK_ROWS = [0, 2, 1, 3, 4, 6, 5, 7]  # llama.cpp's permute for 2 heads of 4 rows
CONVERT = ("convert again with llama.cpp's convert_lora_to_gguf.py from this adapter folder and "
           "the --base it was trained on")


def upd(module: str = "m", rank: int = 4, scaling: float = 2.0,
        transposed: bool = False) -> LoraUpdate:
    return LoraUpdate(module, A, B, rank, scaling * rank, scaling, transposed)


def blank(**kw: Any) -> GgufLoraCheck:
    return GgufLoraCheck("lora.gguf", "adapter", "lora", "llama", kw.pop("alpha", 8.0), 2, 2, **kw)


def test_a_matching_pair_records_its_scale_and_nothing_else() -> None:
    c = blank()
    compare_pair(upd(), {"a": A.copy(), "b": B.copy()}, 8.0, None, c)
    assert (c.scales, c.missing, c.rank_mismatch, c.scale_mismatch, c.value_mismatch) == (
        [(4, 2.0)], [], [], [], [])


@pytest.mark.parametrize("pair", [{"a": A}, {"b": B}, {"a": A[0], "b": B}, {"a": A, "b": B[0]}])
def test_a_pair_without_both_2d_tensors_is_missing(pair: dict[str, np.ndarray]) -> None:
    c = blank()
    compare_pair(upd(), pair, 8.0, None, c)
    assert c.missing == ["m"] and c.scales == []


def test_a_rank_mismatch_stops_the_comparison() -> None:
    c = blank()
    compare_pair(upd(rank=2), {"a": A, "b": B * 9}, 8.0, None, c)
    assert (c.rank_mismatch, c.scales, c.value_mismatch) == (["m: r 4 vs 2"], [], [])


def test_alpha_over_r_must_match_the_adapters_scaling_to_a_thousandth() -> None:
    near, off = blank(), blank()
    compare_pair(upd(scaling=2.0019), {"a": A, "b": B}, 8.0, None, near)
    compare_pair(upd(scaling=2.0021), {"a": A, "b": B}, 8.0, None, off)
    assert near.scale_mismatch == [] and off.scale_mismatch == ["m: 2 vs 2.0021"]


def test_no_alpha_means_scale_one() -> None:
    c = blank()
    compare_pair(upd(scaling=1.0), {"a": A, "b": B}, None, None, c)
    compare_pair(upd(scaling=1.0), {"a": A, "b": B}, 0.0, None, c)
    assert c.scale_mismatch == [] and c.scales == [(4, 1.0), (4, 1.0)]


def test_a_transposed_module_checks_rank_and_scale_only() -> None:
    c = blank()
    compare_pair(upd(transposed=True), {"a": A * 5, "b": B[:2]}, 8.0, None, c)
    assert c.value_mismatch == [] and c.scales == [(4, 2.0)]


def test_q_k_rows_are_compared_in_llama_cpp_order() -> None:
    ok, plain = blank(), blank()
    compare_pair(upd(), {"a": A, "b": B[QK_ROWS]}, 8.0, 2, ok)
    compare_pair(upd(), {"a": A, "b": B}, 8.0, 2, plain)
    assert ok.value_mismatch == []
    # unpermuted, rows 1/2 and 5/6 are swapped: 16 elements off by 4, ‖·‖ 16 / ‖B‖ √11440
    assert plain.value_mismatch == ["m: rel. error A 0.000, B 0.150"]


def test_values_within_two_percent_pass() -> None:
    close, far = blank(), blank()
    compare_pair(upd(), {"a": A * 1.019, "b": B}, 8.0, None, close)
    compare_pair(upd(), {"a": A * 1.021, "b": B}, 8.0, None, far)
    assert close.value_mismatch == []
    assert far.value_mismatch == ["m: rel. error A 0.021, B 0.000"]


def test_a_b_of_another_shape_is_a_value_mismatch() -> None:
    c = blank()
    compare_pair(upd(), {"a": A, "b": B[:6]}, 8.0, None, c)
    assert c.value_mismatch == ["m: shapes (4, 3)/(6, 4)"]
    wide = blank()
    compare_pair(upd(), {"a": np.ones((4, 5), np.float32), "b": B}, 8.0, None, wide)
    assert wide.value_mismatch == ["m: shapes (4, 5)/(8, 4)"]


def test_rel_is_relative_and_absolute_against_zero() -> None:
    assert rel(np.array([3.0, 4.0]), np.array([0.0, 0.0])) == 5.0
    assert rel(np.array([1.0, 1.0]), np.array([1.0, 2.0])) == pytest.approx(1 / np.sqrt(5))


def test_q_k_heads_for_llama_family_q_and_k_only() -> None:
    cfg = {"num_attention_heads": 8, "num_key_value_heads": 2}
    assert q_k_heads("x.q_proj", "llama", cfg) == 8
    assert q_k_heads("x.k_proj", "mistral", cfg) == 2
    assert q_k_heads("x.k_proj", "granite", {"num_attention_heads": 4}) == 4
    assert q_k_heads("x.v_proj", "llama", cfg) is None
    assert q_k_heads("x.q_proj", "qwen2", cfg) is None
    assert q_k_heads("x.q_proj", "llama", {}) is None


def test_base_config_is_empty_when_unreadable(tmp_path: Path) -> None:
    assert base_config(None) == {} and base_config(tmp_path) == {}
    (tmp_path / "config.json").write_text("[1]")
    assert base_config(tmp_path) == {}
    (tmp_path / "config.json").write_text("{bad")
    assert base_config(tmp_path) == {}
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    assert base_config(tmp_path) == {"model_type": "llama"}


def test_name_map_uses_llama_cpp_names_and_the_layer_count() -> None:
    mods = ["model.layers.0.self_attn.q_proj", "model.layers.3.mlp.down_proj", "odd.module"]
    assert name_map("llama", mods, {}) == {"model.layers.0.self_attn.q_proj": "blk.0.attn_q.weight",
                                           "model.layers.3.mlp.down_proj": "blk.3.ffn_down.weight"}
    assert name_map("llama", mods[1:2], {"num_hidden_layers": 2}) == {}
    assert name_map("no-such-arch", mods, {}) == {}


# --- the finding and its hint ---

def test_x004_passes_pinned() -> None:
    assert _finding(blank(alpha=16.0)) == Finding(
        "X004", "pass", "2 lora_a/lora_b pairs, alpha 16, arch llama match the adapter",
        check="LoRA GGUF matches adapter")


def test_x004_lists_each_kind_of_mismatch_and_the_tensor_counts() -> None:
    c = blank(problems=["no adapter.lora.alpha (llama.cpp then scales by 1)"],
              missing=["m1", "m2"], extra=["blk.9.attn_q.weight"], rank_mismatch=["m3: r 4 vs 8"],
              value_mismatch=["m4: shapes (1, 2)/(3, 4)"])
    x004 = _finding(c)
    assert x004.message == (
        "no adapter.lora.alpha (llama.cpp then scales by 1); 2 modules without lora_a/lora_b "
        "(e.g. m1); 1 pairs the adapter does not have (e.g. blk.9.attn_q.weight); 1 rank differs "
        "(e.g. m3: r 4 vs 8); 1 values differ from the adapter (e.g. m4: shapes (1, 2)/(3, 4)); "
        "4 tensors, the adapter has 4")
    assert x004.hint == CONVERT
    assert x004.evidence == {"problems": c.problems, "missing": ["m1", "m2"],
                             "extra": ["blk.9.attn_q.weight"], "rank_mismatch": ["m3: r 4 vs 8"],
                             "scale_mismatch": [], "value_mismatch": ["m4: shapes (1, 2)/(3, 4)"]}


def test_x004_without_missing_or_extra_gives_no_tensor_count() -> None:
    assert _finding(blank(rank_mismatch=["m: r 4 vs 8"])).message == \
        "1 rank differs (e.g. m: r 4 vs 8)"


def test_x004_evidence_lists_fifty() -> None:
    c = blank(missing=[f"m{i}" for i in range(60)])
    assert len(_finding(c).evidence["missing"]) == 50


def test_one_wrong_alpha_says_which_alpha_and_which_scaled_factor() -> None:
    c = blank(scale_mismatch=["a: 2 vs 1", "b: 2 vs 1"], scales=[(4, 1.0), (4, 1.0)])
    x004 = _finding(c)
    assert x004.message == "adapter.lora.alpha 8 gives alpha/r 2 in 2 modules, the adapter " \
                           "scales by 1"
    assert x004.hint == ("llama.cpp scales by adapter.lora.alpha / r: write alpha 4 "
                         "(gguf-set-metadata lora.gguf adapter.lora.alpha 4), or serve it as "
                         "llama-server --lora-scaled lora.gguf 0.5; converting again writes the "
                         "same alpha")


def test_the_scaled_factor_is_left_out_when_pairs_need_different_ones() -> None:
    c = blank(alpha=0.0, scale_mismatch=["a: 1 vs 1", "b: 1 vs 0.5"],
              scales=[(4, 1.0), (8, 0.5)])
    assert _hint(c) == ("llama.cpp scales by adapter.lora.alpha / r: write alpha 4 "
                        "(gguf-set-metadata lora.gguf adapter.lora.alpha 4); converting again "
                        "writes the same alpha")


def test_one_scaled_factor_serves_pairs_that_need_different_alphas() -> None:
    c = blank(alpha=0.0, scale_mismatch=["a: 1 vs 2"], scales=[(4, 2.0), (8, 2.0)])
    assert _hint(c) == ("serve it as llama-server --lora-scaled lora.gguf 2 (llama.cpp scales by "
                        "adapter.lora.alpha / r); converting again writes the same alpha")


def test_pairs_needing_different_alphas_and_factors_must_be_merged() -> None:
    c = blank(scale_mismatch=["a: 2 vs 1", "b: 2 vs 3"], scales=[(4, 1.0), (4, 3.0)])
    assert _hint(c) == (
        "llama.cpp applies one alpha / r to every pair of a file, and this adapter's modules need "
        "2 different ones (alpha_pattern / rank_pattern): no alpha or --lora-scaled reproduces "
        "it; merge the adapter into the base (ftdiag merge) and convert the merged model instead")
    assert _finding(c).message.endswith("the adapter scales by 1, 3")


def test_a_scale_mismatch_with_other_faults_says_convert_again() -> None:
    c = blank(scale_mismatch=["a: 2 vs 1"], scales=[(4, 1.0)], missing=["m"])
    assert _hint(c) == CONVERT


# --- the whole check on a stand-in reader ---

@dataclass
class Field:
    value: Any

    def contents(self) -> Any:
        return self.value


@dataclass
class Tensor:
    name: str
    data: np.ndarray
    tensor_type: int = 0  # F32

    @property
    def shape(self) -> list[int]:
        return list(reversed(self.data.shape))  # GGUF lists dimensions innermost first


@dataclass
class Reader:
    fields: dict[str, Field]
    tensors: list[Tensor]


Q = "model.layers.0.self_attn.v_proj"


def reader(alpha: float | None = 8.0, arch: str = "llama", kind: str = "adapter",
           extra: bool = False) -> Reader:
    meta = {"general.type": kind, "adapter.type": "lora", "general.architecture": arch}
    if alpha is not None:
        meta["adapter.lora.alpha"] = alpha  # type: ignore[assignment]
    tensors = [Tensor("blk.0.attn_v.weight.lora_a", A), Tensor("blk.0.attn_v.weight.lora_b", B),
               Tensor("token_embd.weight", B)]
    if extra:
        tensors += [Tensor("blk.1.attn_v.weight.lora_a", A),
                    Tensor("blk.1.attn_v.weight.lora_b", B)]
    return Reader({k: Field(v) for k, v in meta.items()}, tensors)


def adapter(*modules: str) -> LoraAdapter:
    return LoraAdapter(Path("adapter"), {}, {m: upd(m) for m in modules})


def test_check_gguf_lora_passes_on_a_matching_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llama", "num_hidden_layers": 2}')
    check, (x004,) = check_gguf_lora(Path("lora.gguf"), reader(), adapter(Q), tmp_path)
    assert x004.status == "pass"
    assert (check.general_type, check.adapter_type, check.architecture, check.alpha, check.pairs,
            check.expected_pairs, check.expected_arch) == ("adapter", "lora", "llama", 8.0, 1, 1,
                                                          "llama")


def test_check_gguf_lora_refuses_a_file_that_is_not_a_lora_adapter() -> None:
    _, (x004,) = check_gguf_lora(Path("m.gguf"), reader(kind="model"), adapter(Q), None)
    assert x004.message == "not a LoRA adapter: general.type=model, adapter.type=lora"
    empty = Reader({}, [])
    assert check_gguf_lora(Path("m.gguf"), empty, adapter(Q), None)[1][0].message == \
        "not a LoRA adapter: general.type=–, adapter.type=–"


def test_check_gguf_lora_names_another_architecture_a_missing_alpha_and_extra_pairs(
        tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "mistral"}')
    check, (x004,) = check_gguf_lora(Path("l.gguf"), reader(alpha=None, arch="qwen2", extra=True),
                                     adapter(Q, "model.layers.1.mlp.up_proj"), tmp_path)
    assert check.expected_arch == "llama" and check.alpha is None
    assert check.problems == ["architecture 'qwen2', base is 'llama'",
                              "no adapter.lora.alpha (llama.cpp then scales by 1)"]
    assert check.missing == ["model.layers.1.mlp.up_proj"]
    assert check.extra == ["blk.1.attn_v.weight"] and check.pairs == 2
    assert x004.message.endswith("4 tensors, the adapter has 4")


def test_a_file_without_alpha_reports_scale_one_against_the_adapters() -> None:
    """llama.cpp scales by 1 without adapter.lora.alpha: the adapter's 2 is a mismatch."""
    check, (x004,) = check_gguf_lora(Path("l.gguf"), reader(alpha=None), adapter(Q), None)
    assert check.scale_mismatch == [f"{Q}: 1 vs 2"]
    assert x004.message == ("no adapter.lora.alpha (llama.cpp then scales by 1); "
                            "adapter.lora.alpha absent gives alpha/r 1 in 1 modules, the adapter "
                            "scales by 2")


def test_name_map_without_layer_numbers_or_a_layer_count() -> None:
    assert name_map("llama", ["model.embed_tokens"], {}) == {
        "model.embed_tokens": "token_embd.weight"}


def test_a_file_that_is_not_an_adapter_counts_no_pairs() -> None:
    check, _ = check_gguf_lora(Path("m.gguf"), reader(kind="model"), adapter(Q), None)
    assert (check.pairs, check.expected_pairs) == (0, 1)


def test_a_file_without_architecture_names_none_and_maps_nothing() -> None:
    r = reader()
    del r.fields["general.architecture"]
    check, (x004,) = check_gguf_lora(Path("l.gguf"), r, adapter(Q), None)
    assert check.architecture == "" and check.missing == [Q]
    assert x004.message.startswith("1 modules without lora_a/lora_b")


@pytest.mark.parametrize("fault", [{"rank_mismatch": ["m: r 4 vs 8"]},
                                   {"extra": ["blk.9.attn_q.weight"]},
                                   {"value_mismatch": ["m: shapes (1, 2)/(3, 4)"]}])
def test_any_other_fault_with_a_scale_mismatch_says_convert_again(
        fault: dict[str, list[str]]) -> None:
    c = blank(scale_mismatch=["a: 2 vs 1"], scales=[(4, 1.0)], **fault)
    assert _hint(c) == CONVERT


def test_an_alpha_that_is_not_whole_is_written_as_is() -> None:
    c = blank(scale_mismatch=["a: 2 vs 0.625"], scales=[(4, 0.625)])
    assert _hint(c).startswith("llama.cpp scales by adapter.lora.alpha / r: write alpha 2.5 "
                               "(gguf-set-metadata lora.gguf adapter.lora.alpha 2.5), or serve "
                               "it as llama-server --lora-scaled lora.gguf 0.3125;")


def test_alphas_equal_to_six_digits_are_one_alpha() -> None:
    """r 4 at 1.0 needs α 4; r 3 at 4.0000004/3 needs α 4.0000004: the same to 6 digits."""
    c = blank(scale_mismatch=["a: 2 vs 1", "b: 2.66667 vs 1.33333"],
              scales=[(4, 1.0), (3, 4.0000004 / 3)])
    assert _hint(c).startswith("llama.cpp scales by adapter.lora.alpha / r: write alpha 4 "
                               "(gguf-set-metadata lora.gguf adapter.lora.alpha 4), or serve it "
                               "as llama-server --lora-scaled lora.gguf 0.5;")


# --- exact bounds and message parts the mutation run left ---

def test_alpha_over_r_exactly_a_thousandth_off_still_matches() -> None:
    """r 4, scaling 1000: alpha 4004 or 3996 gives 1001 or 999, off by exactly 1e-3 × 1000."""
    c = blank()
    for alpha in (4004.0, 3996.0):
        compare_pair(upd(scaling=1000.0), {"a": A, "b": B}, alpha, None, c)
    compare_pair(upd(scaling=1000.0), {"a": A, "b": B}, 4004.5, None, c)
    assert c.scale_mismatch == ["m: 1001.12 vs 1000"]


def test_a_small_scaling_is_compared_relatively() -> None:
    """Scaling 0.1 against alpha/r 0.1005: half a thousandth absolute, but 0.5 % relative."""
    c = blank()
    compare_pair(upd(scaling=0.1), {"a": A, "b": B}, 0.402, None, c)
    assert c.scale_mismatch == ["m: 0.1005 vs 0.1"]


def test_values_exactly_two_percent_off_pass() -> None:
    """A 51 where the adapter has 50: a relative error of exactly 1/50."""
    a, b = np.array([[50.0]], np.float32), np.array([[1.0]], np.float32)
    one = LoraUpdate("m", a, b, 1, 1.0, 1.0, False)
    c = blank()
    compare_pair(one, {"a": a + 1, "b": b}, 1.0, None, c)
    compare_pair(one, {"a": a + 1.01, "b": b}, 1.0, None, c)
    assert c.value_mismatch == ["m: rel. error A 0.020, B 0.000"] and c.scale_mismatch == []


@pytest.mark.parametrize("fault", ["missing", "extra"])
def test_missing_or_extra_pairs_alone_give_the_tensor_counts(fault: str) -> None:
    label = {"missing": "modules without lora_a/lora_b", "extra": "pairs the adapter does not have"}
    c = blank(**{fault: ["x"]})
    assert _finding(c).message == f"1 {label[fault]} (e.g. x); 4 tensors, the adapter has 4"


def test_x004_evidence_lists_fifty_of_each_kind() -> None:
    kinds = ("missing", "extra", "rank_mismatch", "scale_mismatch", "value_mismatch")
    c = blank(**{k: [f"m{i}: 2 vs 1" for i in range(60)] for k in kinds})
    evidence = _finding(c).evidence
    assert {k: len(evidence[k]) for k in kinds} == dict.fromkeys(kinds, 50)


def test_the_wrong_alpha_over_r_is_read_after_the_module_name() -> None:
    """A module name holding a space (torch allows it) does not shift the numbers quoted."""
    c = blank(scale_mismatch=["model.my block.q_proj: 2 vs 1"], scales=[(4, 1.0)])
    assert _finding(c).message == ("adapter.lora.alpha 8 gives alpha/r 2 in 1 modules, the "
                                   "adapter scales by 1")
