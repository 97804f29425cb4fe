"""A005-A009 against a base on inputs written here: module lists, shapes, vocab rows, ‖W‖.

The base is a Llama config.json written by hand (its module shapes follow from the numbers in
it) and, where ‖W‖ matters, a model.safetensors saved with safetensors itself holding weights of
known norm (a [[3, 4]] row has norm 5). Each expectation is read off the case, not from ftdiag.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from ftdiag.adapters.base_checks import (
    _keys,
    _shapes,
    _targets,
    _tiny_delta,
    _vocab,
    base_checks,
    tokenizer_size,
)
from ftdiag.adapters.details import AdapterStats, BaseFit
from ftdiag.adapters.files import AdapterFiles
from ftdiag.adapters.keys import AdapterModule, BaseLayout, BaseModule
from ftdiag.adapters.stats import LayerStat
from ftdiag.findings import Finding

# hidden 16, 2 heads of 8, 1 KV head, MLP 32, 1 layer, vocab 100
LLAMA = {"model_type": "llama", "hidden_size": 16, "intermediate_size": 32,
         "num_attention_heads": 2, "num_key_value_heads": 1, "num_hidden_layers": 1,
         "vocab_size": 100}
Q, K, UP = "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", \
    "model.layers.0.mlp.up_proj"


def layout(tmp_path: Path, modules: dict[str, BaseModule] | None = None,
           vocab: int | None = 100) -> BaseLayout:
    config = {"vocab_size": vocab} if vocab else {}
    return BaseLayout(tmp_path, config, modules if modules is not None else {
        Q: BaseModule("linear", 16, 16), K: BaseModule("linear", 8, 16),
        "model.embed_tokens": BaseModule("embedding", 16, 100)})


def lora(*names: str) -> dict[str, AdapterModule]:
    return {n: AdapterModule(n, {"lora_A": f"{n}.lora_A.weight", "lora_B": f"{n}.lora_B.weight"})
            for n in names}


def files(tmp_path: Path, shapes: Mapping[str, tuple[int, ...]],
          config: Mapping[str, object] | None = None) -> AdapterFiles:
    return AdapterFiles(tmp_path, dict(config) if config is not None else {"r": 4}, None,
                        dict(shapes))


def stat(module: str, delta: float, *, b_zero: bool = False, finite: bool = True) -> LayerStat:
    return LayerStat(module, 4, 8.0, 2.0, "F32", 1.0, 1.0, delta, b_zero=b_zero, finite=finite)


# --- A006 ---

def test_a006_passes_when_every_module_is_in_the_base(tmp_path: Path) -> None:
    assert _keys(lora(Q, K), [Q, K], layout(tmp_path)) == Finding(
        "A006", "pass", "all 2 adapted modules exist in the base")


def test_a006_counts_the_unmatched_and_lists_twenty(tmp_path: Path) -> None:
    gone = [f"model.layers.{i}.self_attn.x_proj" for i in range(25)]
    a006 = _keys(lora(Q, *gone), [Q], layout(tmp_path))
    assert (a006.status, a006.message) == (
        "fail", "25/26 adapted modules are not in the base (e.g. model.layers.0.self_attn.x_proj)")
    assert a006.evidence == {"unmatched": gone[:20], "count": 25, "total": 26}
    assert a006.hint.endswith("; PEFT would leave them at init")


def test_a006_hint_names_the_prefix_to_strip(tmp_path: Path) -> None:
    a006 = _keys(lora(f"extra.{Q}"), [], layout(tmp_path))
    assert a006.hint == "strip the prefix 'extra.' from the keys; PEFT would leave them at init"


# --- A007 ---

def test_a007_fails_when_target_modules_match_nothing(tmp_path: Path) -> None:
    assert _targets(lora(Q), [Q], [], {"target_modules": ["nope"]}) == Finding(
        "A007", "fail", "target_modules ['nope'] match no module of the base",
        "PEFT would inject nothing; fix target_modules in adapter_config.json (module names of "
        "this base)", {"target_modules": ["nope"], "expected": 0, "adapter_modules": 1})


def test_a007_fails_on_adapted_modules_outside_the_targets(tmp_path: Path) -> None:
    outside = [f"m{i}" for i in range(22)]
    a007 = _targets(lora(Q, *outside), [Q, *outside], [Q], {"target_modules": ["q_proj"]})
    assert a007 == Finding(
        "A007", "fail", "22 adapted modules are not selected by target_modules ['q_proj'] "
        "(e.g. m0)", "their weights would be ignored on load; fix target_modules",
        {"not_targeted": outside[:20], "expected": 1, "adapter_modules": 23})


def test_a007_passes_with_the_counts(tmp_path: Path) -> None:
    assert _targets(lora(Q), [Q], [Q, K], {"target_modules": ["q_proj", "k_proj"]}) == Finding(
        "A007", "pass", "target_modules select 2 base modules; adapter holds 1", "",
        {"expected": 2, "adapter_modules": 1})


# --- A008 shapes ---

def test_a008_skips_when_nothing_matched(tmp_path: Path) -> None:
    assert _shapes(files(tmp_path, {}), lora(Q), [], layout(tmp_path)) == [Finding(
        "A008", "skip", "skipped: no adapted module is in the base (A006)")]


def test_a008_passes_on_fitting_shapes_and_ignores_embeddings(tmp_path: Path) -> None:
    shapes = {f"{Q}.lora_A.weight": (4, 16), f"{Q}.lora_B.weight": (16, 4),
              f"{K}.lora_A.weight": (4, 16), f"{K}.lora_B.weight": (8, 4),
              "model.embed_tokens.lora_A.weight": (4, 7)}
    found = _shapes(files(tmp_path, shapes), lora(Q, K, "model.embed_tokens"),
                    [Q, K, "model.embed_tokens"], layout(tmp_path))
    assert found == [Finding("A008", "pass", "shapes of 3 matched modules fit the base")]


@pytest.mark.parametrize(("a", "b", "shown"), [
    ((4, 32), (8, 4), "A[4, 32] B[8, 4]"),   # in_features wrong
    ((4, 16), (16, 4), "A[4, 16] B[16, 4]"),  # out_features wrong
    ((4, 32), None, "A[4, 32] B[]"),           # lora_B missing, A wrong
    (None, (9, 4), "A[] B[9, 4]"),             # lora_A missing, B wrong
])
def test_a008_fails_on_either_side_of_the_pair(tmp_path: Path, a: tuple[int, ...] | None,
                                               b: tuple[int, ...] | None, shown: str) -> None:
    shapes: dict[str, tuple[int, ...]] = {f"{Q}.lora_A.weight": (4, 16),
                                          f"{Q}.lora_B.weight": (16, 4)}
    shapes |= {k: v for k, v in ((f"{K}.lora_A.weight", a), (f"{K}.lora_B.weight", b)) if v}
    found = _shapes(files(tmp_path, shapes), lora(Q, K), [Q, K], layout(tmp_path))
    bad = f"{K}: {shown} vs base out=8 in=16"
    assert found == [Finding("A008", "fail", f"1 LoRA tensors do not fit the base shapes ({bad})",
                             "the adapter was trained on a different base model; pass the right "
                             "--base", {"mismatched": [bad], "count": 1})]


def test_a008_lists_twenty_mismatches_and_counts_all(tmp_path: Path) -> None:
    names = [f"m{i}" for i in range(21)]
    base = layout(tmp_path, {n: BaseModule("linear", 8, 16) for n in names})
    shapes = {f"{n}.lora_A.weight": (4, 15) for n in names}
    (a008,) = _shapes(files(tmp_path, shapes), lora(*names), names, base)
    assert a008.evidence["count"] == 21 and len(a008.evidence["mismatched"]) == 20


def test_a008_expert_parameters_need_rank_times_experts(tmp_path: Path) -> None:
    experts = BaseModule("param", 8, 16, experts=4, key="experts.gate_up")
    base = layout(tmp_path, {"moe": experts})
    ok = _shapes(files(tmp_path, {"moe.lora_A.weight": (16, 16)}), lora("moe"), ["moe"], base)
    assert ok[0].status == "pass"
    bad = _shapes(files(tmp_path, {"moe.lora_A.weight": (4, 16)}), lora("moe"), ["moe"], base)
    assert bad[0].evidence["mismatched"] == [
        "moe: A[4, 16] holds rank 4, not r=4 x 4 experts of experts.gate_up"]
    pattern = {"r": 4, "rank_pattern": {"gate_up": 1}}
    by_pattern = _shapes(files(tmp_path, {"moe.lora_A.weight": (4, 16)}, pattern), lora("moe"),
                         ["moe"], base)
    assert by_pattern[0].status == "pass"


def test_a008_expert_rank_is_not_checked_without_an_integer_r(tmp_path: Path) -> None:
    base = layout(tmp_path, {"moe": BaseModule("param", 8, 16, experts=4, key="w")})
    found = _shapes(files(tmp_path, {"moe.lora_A.weight": (3, 16)}, {}), lora("moe"), ["moe"],
                    base)
    assert found[0].status == "pass"


# --- A009 ---

def write_tokenizer(folder: Path, vocab: object,
                    added: list[dict[str, object]] | None) -> None:
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"vocab": vocab},
                                                       "added_tokens": added}))


def test_tokenizer_size_is_the_largest_id_plus_one(tmp_path: Path) -> None:
    assert tokenizer_size(tmp_path) is None
    write_tokenizer(tmp_path, {"a": 0, "b": 5}, [{"id": 7}, {"content": "x"}])
    assert tokenizer_size(tmp_path) == 8
    write_tokenizer(tmp_path, [["a", 0.0], ["b", 0.0], ["c", 0.0]], None)  # unigram: a list
    assert tokenizer_size(tmp_path) == 3
    write_tokenizer(tmp_path, {}, [])
    assert tokenizer_size(tmp_path) is None
    (tmp_path / "tokenizer.json").write_text("{broken")
    assert tokenizer_size(tmp_path) is None


def test_a009_skips_without_a_vocab_size(tmp_path: Path) -> None:
    assert _vocab(files(tmp_path, {}), {}, [], layout(tmp_path, vocab=None)) == Finding(
        "A009", "skip", "skipped: base config has no vocab_size")


def test_a009_passes_with_and_without_an_adapter_tokenizer(tmp_path: Path) -> None:
    assert _vocab(files(tmp_path, {}), {}, [], layout(tmp_path)) == Finding(
        "A009", "pass", "vocab 100 consistent", "", {"base_vocab": 100})
    write_tokenizer(tmp_path, {str(i): i for i in range(100)}, None)  # exactly the base vocab
    assert _vocab(files(tmp_path, {}), {}, [], layout(tmp_path)).message \
        == "vocab 100 consistent (adapter tokenizer 100)"


def test_a009_fails_on_saved_rows_embedding_a_and_a_bigger_tokenizer(tmp_path: Path) -> None:
    shapes = {"base_model.model.lm_head.weight": (102, 16),
              "base_model.model.model.embed_tokens.weight": (100, 16),  # fits
              "base_model.model.lm_head.bias": (7,),  # not a weight: ignored
              "base_model.model.my_lm_head.weight": (5, 16),  # another module: ignored
              "model.embed_tokens.lora_embedding_A": (4, 101)}
    mods = {"model.embed_tokens": AdapterModule(
        "model.embed_tokens", {"lora_embedding_A": "model.embed_tokens.lora_embedding_A"})}
    write_tokenizer(tmp_path, {"a": 0}, [{"id": 100}])
    other = ["base_model.model.lm_head.weight", "base_model.model.model.embed_tokens.weight",
             "base_model.model.lm_head.bias", "base_model.model.my_lm_head.weight"]
    bad = ["base_model.model.lm_head.weight has 102 rows",
           "model.embed_tokens.lora_embedding_A covers 101 tokens",
           "the adapter's tokenizer has 101 tokens"]
    assert _vocab(files(tmp_path, shapes), mods, other, layout(tmp_path)) == Finding(
        "A009", "fail", f"base vocab is 100 but {bad[0]}", "resize the base embeddings "
        "(resize_token_embeddings) and save embed_tokens/lm_head with the adapter "
        "(save_embedding_layers)", {"base_vocab": 100, "mismatches": bad, "tokenizer_size": 101})


def test_a009_a_top_level_embedding_key_counts(tmp_path: Path) -> None:
    found = _vocab(files(tmp_path, {"wte.weight": (50, 8)}), {}, ["wte.weight"], layout(tmp_path))
    assert found.evidence["mismatches"] == ["wte.weight has 50 rows"]


# --- A005 ---

def save_base(tmp_path: Path) -> None:
    """‖W‖ = 5 for q_proj, 10 for k_proj (k_proj stored under the key without 'model.')."""
    save_file({f"{Q}.weight": np.array([[3.0, 4.0]], np.float32),
               "layers.0.self_attn.k_proj.weight": np.array([[6.0, 8.0]], np.float32)},
              str(tmp_path / "model.safetensors"))


def info_with_base(tmp_path: Path) -> AdapterStats:
    return AdapterStats(str(tmp_path), base=BaseFit(str(tmp_path), "llama", 2, 2, 100))


def test_a005_skips_when_no_layer_is_trained_and_finite(tmp_path: Path) -> None:
    stats = [stat(Q, 1.0, b_zero=True), stat(K, 1.0, finite=False)]
    assert _tiny_delta(stats, layout(tmp_path), info_with_base(tmp_path), 1e-4, 0.5) == Finding(
        "A005", "skip", "skipped: no trained finite layers")


def test_a005_without_base_weights_reports_the_absolute_update(tmp_path: Path) -> None:
    info = info_with_base(tmp_path)
    stats = [stat(Q, 0.25), stat(K, 1.0), stat(UP, 9.0, b_zero=True)]
    assert _tiny_delta(stats, layout(tmp_path), info, 1e-4, 0.5) == Finding(
        "A005", "skip", "skipped: base has no safetensors weights (ratio not computed); "
        "absolute Σ‖ΔW‖ = 1.25")
    assert info.base is not None and info.base.ratio_skipped == "base has no safetensors weights"


def test_a005_skips_when_the_base_lacks_the_adapted_modules(tmp_path: Path) -> None:
    save_base(tmp_path)
    assert _tiny_delta([stat(UP, 1.0)], layout(tmp_path), info_with_base(tmp_path), 1e-4,
                       0.5) == Finding("A005", "skip",
                                       "skipped: no base weights found for adapted modules")


def test_a005_warns_when_the_small_share_reaches_most(tmp_path: Path) -> None:
    """q_proj moves 1e-5 (‖ΔW‖ 5e-5 / 5), k_proj 1e-2 (0.1 / 10): one of two below 1e-4."""
    save_base(tmp_path)
    stats = [stat(Q, 5e-5), stat(K, 0.1)]
    a005 = _tiny_delta(stats, layout(tmp_path), info_with_base(tmp_path), 1e-4, 0.5)
    assert a005 == Finding("A005", "warn", "1/2 layers move ‖ΔW‖/‖W‖ < 0.0001 (median 1.00e-02)",
                           "train longer or with a higher lr / lora_alpha",
                           {"below": 1, "total": 2, "median_rel": pytest.approx(0.01),
                            "threshold": 1e-4})
    assert [s.w_norm for s in stats] == [5.0, 10.0]
    assert [s.rel for s in stats] == [pytest.approx(1e-5), pytest.approx(1e-2)]


def test_a005_passes_just_below_most_and_at_the_threshold(tmp_path: Path) -> None:
    save_base(tmp_path)
    stats = [stat(Q, 5e-5), stat(K, 0.1)]
    a005 = _tiny_delta(stats, layout(tmp_path), info_with_base(tmp_path), 1e-4, 0.6)
    assert a005 == Finding("A005", "pass", "median ‖ΔW‖/‖W‖ = 1.00e-02 (1/2 below 0.0001)", "",
                           {"median_rel": pytest.approx(0.01)})
    at = _tiny_delta([stat(Q, 5e-4)], layout(tmp_path), info_with_base(tmp_path), 1e-4, 0.5)
    assert at.status == "pass"  # rel == threshold is not below it


# --- the whole base layer on a config-only Llama ---

def test_base_checks_fill_the_base_fit_and_run_every_check_in_order(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps(LLAMA))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    shapes = {f"{Q}.lora_A.weight": (4, 16), f"{Q}.lora_B.weight": (16, 4)}
    info = AdapterStats(str(adapter))
    found = base_checks(files(adapter, shapes, {"r": 4, "target_modules": ["q_proj", "k_proj"]}),
                        lora(Q), [], [stat(Q, 1.0)], base, info, threshold=1e-4, most=0.5)
    assert [(f.code, f.status) for f in found] == [
        ("A006", "pass"), ("A007", "pass"), ("A008", "pass"), ("A008", "pass"),
        ("A009", "pass"), ("A005", "skip")]
    assert info.base == BaseFit(str(base), "llama", 2, 1, 100,
                                ratio_skipped="base has no safetensors weights")
    assert found[1].message == "target_modules select 2 base modules; adapter holds 1"


def test_a008_an_embedding_before_a_bad_module_does_not_end_the_check(tmp_path: Path) -> None:
    emb = "model.embed_tokens"
    shapes = {f"{emb}.lora_A.weight": (4, 7), f"{K}.lora_A.weight": (4, 15)}
    (a008,) = _shapes(files(tmp_path, shapes), lora(emb, K), [emb, K], layout(tmp_path))
    assert a008.evidence["count"] == 1


def test_a008_the_rank_of_a_plain_linear_is_not_checked_against_r(tmp_path: Path) -> None:
    shapes = {f"{Q}.lora_A.weight": (8, 16), f"{Q}.lora_B.weight": (16, 8)}  # r 8, config r 4
    assert _shapes(files(tmp_path, shapes), lora(Q), [Q], layout(tmp_path))[0].status == "pass"


def test_tokenizer_size_reads_ids_not_positions(tmp_path: Path) -> None:
    write_tokenizer(tmp_path, {"a": 0, "b": 5}, None)
    assert tokenizer_size(tmp_path) == 6
    write_tokenizer(tmp_path, {}, [{"content": "x"}])  # an added token without id counts as 0
    assert tokenizer_size(tmp_path) == 1
    (tmp_path / "tokenizer.json").write_text(json.dumps({"added_tokens": [{"id": 3}]}))
    assert tokenizer_size(tmp_path) == 4


def test_a009_a_fitting_lora_embedding_a_is_fine(tmp_path: Path) -> None:
    mods = {"model.embed_tokens": AdapterModule(
        "model.embed_tokens", {"lora_embedding_A": "model.embed_tokens.lora_embedding_A"})}
    found = _vocab(files(tmp_path, {"model.embed_tokens.lora_embedding_A": (4, 100)}), mods, [],
                   layout(tmp_path))
    assert found.status == "pass"


def test_target_parameters_put_parameter_wrappers_on_the_base(tmp_path: Path) -> None:
    """PEFT's target_parameters wraps a parameter: the base is built on meta to list them."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({**LLAMA, "architectures": ["LlamaForCausalLM"]}))
    down = "model.layers.0.mlp.down_proj"
    cfg = {"r": 4, "target_parameters": [f"{down}.weight"]}
    shapes = {f"{down}.lora_A.weight": (4, 32), f"{down}.lora_B.weight": (16, 4)}
    found = base_checks(files(tmp_path, shapes, cfg), lora(down), [], [], base,
                        AdapterStats(str(tmp_path)), threshold=1e-4, most=0.5)
    assert [(f.code, f.status) for f in found[:3]] == [("A006", "pass"), ("A007", "pass"),
                                                       ("A008", "pass")]
    assert found[1].message == "target_modules select 1 base modules; adapter holds 1"
