"""Layer S of check-adapter: each known file-level cause is reported with its A0xx code."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _adapter_fixtures import (
    WEIGHTS,
    add_lm_head,
    add_tokens,
    config_only_base,
    copy_adapter,
    double_prefix,
    edit_config,
    nan_one,
    rewrite,
    scale_b,
    zero_b,
    zero_b_layer,
)
from safetensors.torch import load_file

from ftdiag.adapters.static import run_static
from ftdiag.adapters.stats import delta_norm
from ftdiag.errors import FtdiagError
from ftdiag.testing import tiny

ARCHS = ["llama", "gpt2"]


@pytest.fixture(params=ARCHS)
def arch(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def base(arch: str, request: pytest.FixtureRequest) -> Path:
    return Path(request.getfixturevalue("tiny_llama" if arch == "llama" else "tiny_gpt2"))


@pytest.fixture
def healthy(arch: str, request: pytest.FixtureRequest) -> Path:
    name = "trained_adapter" if arch == "llama" else "trained_gpt2_adapter"
    return Path(request.getfixturevalue(name))


@pytest.fixture
def broken(healthy: Path, tmp_path: Path) -> Path:
    """A private copy of the healthy adapter to break."""
    return copy_adapter(healthy, tmp_path / "adapter")


def codes(adapter: Path, base: Path | None) -> set[str]:
    return run_static(adapter, base).codes()


def test_healthy_adapter_raises_no_static_finding(healthy: Path, base: Path) -> None:
    report = run_static(healthy, base)
    assert report.codes() == set()
    assert report.verdict == "pass"
    static = report.details.static
    assert static.adapted_modules == static.base.expected_modules == static.base.matched_modules
    assert all(ly.rel is not None and ly.rel > 1e-3 for ly in static.layers)
    json.dumps(report.to_dict())


def test_relative_update_matches_materialised_delta(healthy: Path, base: Path, arch: str) -> None:
    """‖(α/r)·B·A‖/‖W‖ from the r×r trace equals the one from ΔW built explicitly."""
    from safetensors.torch import load_file as load

    report = run_static(healthy, base)
    layer = report.details.static.layers[0]
    t = load_file(str(healthy / WEIGHTS))
    prefix = "base_model.model." + layer.module
    a, b = t[prefix + ".lora_A.weight"], t[prefix + ".lora_B.weight"]
    w = load(str(base / "model.safetensors"))[layer.module + ".weight"]
    dw = layer.scaling * (b @ a)
    if arch == "gpt2":  # Conv1D stores W as [in, out]
        dw = dw.T
    assert dw.shape == w.shape
    assert layer.delta_norm == pytest.approx(float(dw.norm()), rel=1e-4)
    assert layer.rel == pytest.approx(float(dw.norm() / w.norm()), rel=1e-4)


def test_trace_norm_is_frobenius_norm() -> None:
    a, b = torch.randn(8, 50).numpy(), torch.randn(70, 8).numpy()
    assert delta_norm(a, b) == pytest.approx(float(np.linalg.norm(b @ a)), rel=1e-5)


def test_missing_weights_file_is_a001(broken: Path, base: Path) -> None:
    (broken / WEIGHTS).unlink()
    report = run_static(broken, base)
    assert report.codes() == {"A001"} and report.verdict == "fail"
    assert "R" in report.layers_skipped


def test_missing_config_is_a001(broken: Path) -> None:
    (broken / "adapter_config.json").unlink()
    assert codes(broken, None) == {"A001"}


def test_empty_weights_file_is_a002(broken: Path, base: Path) -> None:
    (broken / WEIGHTS).write_bytes(b"")
    assert codes(broken, base) == {"A002"}


def test_file_without_tensors_is_a002(broken: Path, base: Path) -> None:
    rewrite(broken, lambda t: {})
    assert codes(broken, base) == {"A002"}


def test_zero_element_tensors_are_a002(broken: Path, base: Path) -> None:
    rewrite(broken, lambda t: {k: v[:0] if ".lora_A." in k else v for k, v in t.items()})
    assert "A002" in codes(broken, base)


def test_all_zero_b_is_a003(broken: Path, base: Path) -> None:
    rewrite(broken, zero_b)
    report = run_static(broken, base)
    assert report.codes() == {"A003"}
    assert report.details.static.totals.zero_b == len(report.details.static.layers)


def test_nan_is_a004(broken: Path, base: Path) -> None:
    rewrite(broken, nan_one)
    report = run_static(broken, base)
    assert "A004" in report.codes()
    a004 = next(f for f in report.findings if f.code == "A004")
    assert a004.evidence["count"] == 1 and ".lora_A." in a004.evidence["tensors"][0]


def test_tiny_update_is_a005(broken: Path, base: Path) -> None:
    rewrite(broken, scale_b(1e-7))
    report = run_static(broken, base)
    assert report.codes() == {"A005"} and report.verdict == "warn"


def test_a005_threshold_is_configurable(healthy: Path, base: Path) -> None:
    assert "A005" in run_static(healthy, base, threshold=1e3).codes()


def test_double_wrapped_keys_are_a006_with_a_prefix_hint(broken: Path, base: Path) -> None:
    rewrite(broken, double_prefix)
    report = run_static(broken, base)
    assert "A006" in report.codes()
    a006 = next(f for f in report.findings if f.code == "A006")
    assert a006.evidence["count"] == a006.evidence["total"]
    assert "strip the prefix 'base_model.model.'" in a006.hint


def test_one_renamed_layer_is_a006_counted_alone(broken: Path, base: Path) -> None:
    """A single module whose name the base lacks (a renamed layer) is enough for A006."""
    keys = load_file(str(broken / WEIGHTS))
    modules = sorted({k.split(".lora_A.")[0] for k in keys if ".lora_A." in k})
    victim = modules[-1]
    rewrite(broken, lambda t: {k.replace(victim + ".", victim + "_renamed.", 1): v
                               for k, v in t.items()})
    a006 = next(f for f in run_static(broken, base).findings if f.code == "A006")
    assert a006.status == "fail"
    assert (a006.evidence["count"], a006.evidence["total"]) == (1, len(modules))
    assert [m.endswith("_renamed") for m in a006.evidence["unmatched"]] == [True]


def test_adapter_for_another_architecture_is_a006(trained_gpt2_adapter: Path,
                                                  tiny_llama: Path) -> None:
    assert "A006" in codes(trained_gpt2_adapter, tiny_llama)


def test_wrong_target_modules_are_a007(broken: Path, base: Path) -> None:
    edit_config(broken, target_modules=["query", "value"])
    report = run_static(broken, base)
    assert report.codes() == {"A007"}
    assert report.details.static.base.expected_modules == 0


def test_targets_narrower_than_the_adapter_are_a007(broken: Path, base: Path, arch: str) -> None:
    edit_config(broken, target_modules=["c_fc"] if arch == "gpt2" else ["q_proj"])
    a007 = next(f for f in run_static(broken, base).findings if f.code == "A007")
    assert a007.evidence["expected"] < a007.evidence["adapter_modules"]


def test_adapter_from_bigger_model_is_a008(arch: str, base: Path, tmp_path: Path) -> None:
    big = tiny.save_base(tmp_path / "big", arch, hidden=64)
    adapter = tiny.train_toy_adapter(big, tmp_path / "a", steps=1)
    report = run_static(adapter, base)
    a008 = [f for f in report.findings if f.code == "A008"]
    assert {f.status for f in a008} == {"fail", "warn"}  # shapes, and the recorded base name
    assert report.verdict == "fail"


def test_recorded_base_name_differs_is_a008_warning(broken: Path, base: Path,
                                                   tmp_path: Path, arch: str) -> None:
    other = tiny.save_base(tmp_path / "other", arch, seed=1, layers=3)
    edit_config(broken, base_model_name_or_path=str(other))
    report = run_static(broken, base)
    assert report.codes() == {"A008"} and report.verdict == "warn"


def test_tokenizer_with_added_tokens_is_a009(broken: Path, base: Path) -> None:
    add_tokens(broken, 40)
    a009 = next(f for f in run_static(broken, base).findings if f.code == "A009")
    assert a009.evidence["tokenizer_size"] == a009.evidence["base_vocab"] + 40


def test_saved_lm_head_of_another_vocab_is_a009(broken: Path, base: Path) -> None:
    rewrite(broken, add_lm_head(500, 32))
    assert "A009" in codes(broken, base)


def test_half_trained_layers_are_a010(broken: Path, base: Path) -> None:
    rewrite(broken, zero_b_layer(1))
    report = run_static(broken, base)
    assert report.codes() == {"A010"}
    a010 = next(f for f in report.findings if f.code == "A010")
    assert a010.evidence["count"] * 2 == a010.evidence["total"]


def test_base_without_weights_skips_only_the_ratio(healthy: Path, base: Path,
                                                   tmp_path: Path) -> None:
    report = run_static(healthy, config_only_base(base, tmp_path / "cfg-only"))
    # another folder than the recorded base, and no weights to prove it the same: A008 warns
    assert report.codes() == {"A008"}
    assert next(f for f in report.findings if f.code == "A008").status == "warn"
    a005 = next(c for c in report.checks if c.code == "A005")
    assert a005.status == "skip" and "no safetensors weights" in a005.message
    assert all(ly.rel is None and ly.delta_norm > 0
               for ly in report.details.static.layers)


def test_rslora_and_alpha_pattern_set_the_scaling(broken: Path, base: Path) -> None:
    edit_config(broken, use_rslora=True, alpha_pattern={"v_proj": 32, "c_attn": 32})
    layers = run_static(broken, base).details.static.layers
    r = layers[0].rank
    patterned = [ly for ly in layers if ly.module.endswith(("v_proj", "c_attn"))]
    plain = [ly for ly in layers if ly not in patterned]
    assert patterned and all(ly.scaling == pytest.approx(32 / math.sqrt(r)) for ly in patterned)
    assert all(ly.scaling == pytest.approx(8 / math.sqrt(r)) for ly in plain)


def test_bin_weights_are_read_too(broken: Path, base: Path) -> None:
    tensors = load_file(str(broken / WEIGHTS))
    (broken / WEIGHTS).unlink()
    torch.save(zero_b(tensors), broken / "adapter_model.bin")
    assert codes(broken, base) == {"A003"}


@pytest.mark.parametrize("damage", ["truncate", "json", "type"])
def test_unreadable_input_is_a_user_error(broken: Path, base: Path, damage: str) -> None:
    if damage == "truncate":
        data = (broken / WEIGHTS).read_bytes()
        (broken / WEIGHTS).write_bytes(data[: len(data) // 2])
    elif damage == "json":
        (broken / "adapter_config.json").write_text("{not json")
    else:
        edit_config(broken, peft_type="PREFIX_TUNING")
    with pytest.raises(FtdiagError):
        run_static(broken, base)


@pytest.mark.parametrize("cfg", [
    {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
     "num_hidden_layers": 2, "num_attention_heads": 32, "num_key_value_heads": 32,
     "vocab_size": 32000, "tie_word_embeddings": False},
    {"model_type": "mistral", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
     "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 500},
    {"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
     "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 500,
     "tie_word_embeddings": True},
])
def test_llama_family_layout_equals_the_meta_model(cfg: dict[str, object],
                                                   tmp_path: Path) -> None:
    """The torch-free layout for Llama-like configs is exactly what the meta-device model has."""
    from ftdiag.adapters.keys import llama_modules, meta_modules

    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert llama_modules(cfg) == meta_modules(tmp_path)[0]


def test_static_check_does_not_import_torch(trained_adapter: Path, tiny_llama: Path) -> None:
    import subprocess
    import sys

    code = ("import sys; from ftdiag.adapters.check import check_adapter; "
            f"r = check_adapter({str(trained_adapter)!r}, {str(tiny_llama)!r}, static_only=True); "
            "assert r.verdict == 'pass', r.codes(); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
