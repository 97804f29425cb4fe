"""Layer R: audit_model on live objects and check_adapter's runtime layer (R001-R009)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from _adapter_fixtures import copy_adapter, double_prefix, rewrite, scale_b, zero_b
from peft import LoraConfig, PeftModel, get_peft_model

from ftdiag import audit_model, check_adapter
from ftdiag.adapters.runtime import audit_runtime
from ftdiag.generation.arms import Arm
from ftdiag.model.load import load_base


@pytest.fixture(params=["llama", "gpt2"])
def pair(request: pytest.FixtureRequest) -> tuple[Path, Path]:
    """(base dir, healthy adapter dir) for each tiny architecture."""
    if request.param == "llama":
        return request.getfixturevalue("tiny_llama"), request.getfixturevalue("trained_adapter")
    return request.getfixturevalue("tiny_gpt2"), request.getfixturevalue("trained_gpt2_adapter")


def loaded(base_dir: Path, adapter: Path) -> tuple[Any, Any, Any]:
    """(PeftModel, the base object PEFT mutated, tokenizer) as a user's app would hold them."""
    base = load_base(base_dir)
    return PeftModel.from_pretrained(base.model, str(adapter)).eval(), base.model, base.tokenizer


def test_healthy_adapter_passes_every_runtime_check(pair: tuple[Path, Path]) -> None:
    report = check_adapter(pair[1])
    assert report.layers_run == ["S", "R"]
    assert report.codes() == set() and report.verdict == "pass"
    probe = report.details.runtime.probe
    assert probe["max_abs_diff"] > 1e-2 and probe["prompts"] >= 3
    assert all(line.value for line in report.details.runtime.status
               if line.name != "merged")
    # the fast path was measured against R005's logits of both arms, on every probe
    fast = report.details.runtime.fast_path
    assert fast.used and fast.gap is not None and fast.gap <= fast.tolerance
    assert f" of {probe['prompts']} prompts and a decoding step vs disable_adapter() and the " \
        "adapter on each prompt alone: " in fast.reason


def test_static_only_does_not_load_the_model(pair: tuple[Path, Path]) -> None:
    report = check_adapter(pair[1], static_only=True)
    assert report.layers_run == ["S"]
    assert report.layers_skipped == {"R": "--static-only", "T": "no --runtime given"}
    assert not any(c.code.startswith("R") for c in report.checks)


def test_plain_base_model_is_r001(pair: tuple[Path, Path]) -> None:
    base = load_base(pair[0])
    report = audit_model(base.model, tokenizer=base.tokenizer)
    assert "R001" in report.codes() and report.verdict == "fail"


def test_fresh_get_peft_model_is_r001_and_r006(pair: tuple[Path, Path]) -> None:
    base_dir, adapter = pair
    base = load_base(base_dir)
    targets = ["c_attn", "c_proj", "c_fc"] if "gpt2" in str(base_dir) else ["q_proj", "v_proj"]
    fresh = get_peft_model(base.model, LoraConfig(r=4, target_modules=targets)).eval()
    report = audit_model(fresh, tokenizer=base.tokenizer, adapter_dir=adapter)
    assert {"R001", "R005", "R006"} <= report.codes()


def test_disabled_adapter_is_r002_and_stays_disabled(pair: tuple[Path, Path]) -> None:
    model, _, tok = loaded(*pair)
    model.base_model.disable_adapter_layers()
    report = audit_model(model, tokenizer=tok, adapter_dir=pair[1])
    assert {"R002", "R005"} <= report.codes()
    assert model.get_model_status().enabled is False  # the audit did not switch it back on


def test_other_adapter_active_is_r002(pair: tuple[Path, Path], tmp_path: Path) -> None:
    base_dir, adapter = pair
    other = rewrite(copy_adapter(adapter, tmp_path / "other"), scale_b(-3.0))
    model, _, tok = loaded(base_dir, adapter)
    model.load_adapter(str(other), adapter_name="other")
    model.set_adapter("other")
    r002 = next(f for f in audit_model(model, tokenizer=tok, adapter_dir=adapter).findings
                if f.code == "R002")
    assert "not the one loaded from disk" in r002.message


def test_train_mode_is_r003(pair: tuple[Path, Path]) -> None:
    model, _, tok = loaded(*pair)
    model.train()
    report = audit_model(model, tokenizer=tok)
    assert "R003" in report.codes()
    assert model.training  # restored after the probe


def test_one_dropout_module_in_train_mode_is_r003(tiny_gpt2: Path,
                                                  trained_gpt2_adapter: Path) -> None:
    model, _, tok = loaded(tiny_gpt2, trained_gpt2_adapter)
    model.get_base_model().transformer.drop.train()
    r003 = next(f for f in audit_model(model, tokenizer=tok).findings if f.code == "R003")
    assert r003.evidence["dropout_modules"] == ["base_model.model.transformer.drop"]


def test_mutated_base_object_is_r004(pair: tuple[Path, Path]) -> None:
    model, base_obj, tok = loaded(*pair)
    report = audit_model(model, base=base_obj, tokenizer=tok, adapter_dir=pair[1])
    assert report.codes() == {"R004"}


def test_a_dora_base_arm_that_is_the_adapter_is_r004(tiny_llama: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """DoRA cannot be mixed in one batch: R004 judges the base arm by its logits alone. If
    switching the adapter off silently did nothing, the base arm returns exactly the adapter's."""
    import contextlib

    from _variants import build_adapter

    import ftdiag.adapters.probe as probe
    import ftdiag.generation.arms as arms
    from ftdiag.model.live import can_mix

    adapter = build_adapter(tiny_llama, tmp_path / "dora", "llama", variant="dora")
    model, _, tok = loaded(tiny_llama, adapter)
    assert not can_mix(model)
    r004 = next(c for c in audit_model(model, tokenizer=tok).checks if c.code == "R004")
    assert r004.status == "pass" and r004.evidence["max_abs_diff"] > 0  # the control
    for module in (arms, probe):  # every place that switches the adapters off
        monkeypatch.setattr(module, "adapters_off", lambda m: contextlib.nullcontext())
    r004 = next(c for c in audit_model(model, tokenizer=tok).checks if c.code == "R004")
    assert r004.status == "fail" and r004.evidence == {"max_abs_diff": 0.0}
    assert "exactly the adapter's logits" in r004.message


def test_clean_second_base_is_not_r004(pair: tuple[Path, Path]) -> None:
    model, _, tok = loaded(*pair)
    clean = load_base(pair[0]).model
    r004 = next(c for c in audit_model(model, base=clean, tokenizer=tok).checks
                if c.code == "R004")
    assert r004.status == "pass"


def test_a_separate_base_arm_is_probed_against_the_active_adapter(tiny_llama: Path,
                                                                   trained_adapter: Path) -> None:
    """R004 with a second, clean base: its logits on the first probe vs the adapter's (loaded
    under the name 'tuned': no adapter is called 'default')."""
    base = load_base(tiny_llama)
    model = PeftModel.from_pretrained(base.model, str(trained_adapter), adapter_name="tuned")
    clean, tok = load_base(tiny_llama).model, base.tokenizer
    audit = audit_runtime(model.eval(), clean, tok, ["Title: Mug", "Title: Pan"])
    r004 = next(c for c in audit.report.checks if c.code == "R004")
    enc = tok("Title: Mug", return_tensors="pt")
    with torch.inference_mode():
        gap = float((clean(**enc).logits[0] - model(**enc).logits[0]).abs().max())
    assert gap > 1e-2
    assert r004.status == "pass" and r004.evidence["path"] == "separate model"
    assert r004.evidence["max_abs_diff"] == pytest.approx(gap, rel=1e-5)
    assert r004.message == f"base arm is the base model: LoRA off, max |Δlogit| vs adapter " \
                           f"{r004.evidence['max_abs_diff']:.3g}"
    assert audit.base_arm == Arm("base", clean, None)
    assert audit.adapter_arm == Arm("adapter", model, "tuned")


def test_zero_b_adapter_has_no_output_effect_r005(pair: tuple[Path, Path], tmp_path: Path) -> None:
    adapter = rewrite(copy_adapter(pair[1], tmp_path / "a"), zero_b)
    report = check_adapter(adapter, pair[0])
    assert {"A003", "R005"} <= report.codes()
    assert "R001" not in report.codes()  # injected fine: the file itself is the problem
    assert report.details.runtime.probe["max_abs_diff"] == 0.0


def test_tiny_update_is_a005_and_r005(pair: tuple[Path, Path], tmp_path: Path) -> None:
    adapter = rewrite(copy_adapter(pair[1], tmp_path / "a"), scale_b(1e-9))
    assert {"A005", "R005"} <= check_adapter(adapter).codes()


def test_keys_dropped_on_load_are_r006(pair: tuple[Path, Path], tmp_path: Path) -> None:
    adapter = rewrite(copy_adapter(pair[1], tmp_path / "a"), double_prefix)
    report = check_adapter(adapter)
    assert {"A006", "R006", "R005"} <= report.codes()
    r006 = next(f for f in report.findings if f.code == "R006")
    assert r006.evidence["dropped"]


def test_sampling_generation_config_is_r008(pair: tuple[Path, Path]) -> None:
    model, _, tok = loaded(*pair)
    model.generation_config.do_sample = True
    model.generation_config.temperature = 0.7
    assert "R008" in audit_model(model, tokenizer=tok).codes()


def test_pad_equal_to_eos_is_r009(pair: tuple[Path, Path]) -> None:
    model, _, tok = loaded(*pair)
    tok.pad_token = tok.eos_token
    assert audit_model(model, tokenizer=tok).codes() == {"R009"}


def test_adapter_tokenizer_is_preferred_for_r009(pair: tuple[Path, Path], tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    adapter = copy_adapter(pair[1], tmp_path / "a")
    tok = AutoTokenizer.from_pretrained(str(adapter))
    tok.pad_token = tok.eos_token
    tok.save_pretrained(str(adapter))
    r009 = next(f for f in check_adapter(adapter).findings if f.code == "R009")
    assert r009.evidence["source"] == "adapter tokenizer"


def test_reusing_a_loaded_model_skips_loading(pair: tuple[Path, Path]) -> None:
    model, _, tok = loaded(*pair)
    weight = next(p for n, p in model.named_parameters() if "lora_B" in n)
    report = check_adapter(pair[1], model=model, tokenizer=tok, probes=["Title: mug\n"])
    assert report.codes() == set()
    assert report.details.runtime.probe["prompts"] == 1
    assert next(p for n, p in model.named_parameters() if "lora_B" in n) is weight


def test_probe_leaves_the_model_as_it_was(pair: tuple[Path, Path]) -> None:
    model, _, tok = loaded(*pair)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    audit_model(model, tokenizer=tok)
    assert not model.training and model.get_model_status().enabled is True
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


def test_shape_mismatch_skips_runtime_with_reason(tiny_llama: Path, tmp_path: Path) -> None:
    from ftdiag.testing import tiny

    big = tiny.save_base(tmp_path / "big", "llama", hidden=64)
    adapter = tiny.train_toy_adapter(big, tmp_path / "a", steps=1)
    report = check_adapter(adapter, tiny_llama)
    assert "A008" in report.codes()
    assert "R" in report.layers_skipped and "R" not in report.layers_run


def test_merged_adapter_skips_the_probe_and_says_merged(pair: tuple[Path, Path]) -> None:
    model, _, tok = loaded(*pair)
    model.merge_adapter()
    report = audit_model(model, tokenizer=tok, adapter_dir=pair[1])
    r005 = next(c for c in report.checks if c.code == "R005")
    assert r005.status == "skip" and "merged" in r005.message
    merged = next(ln for ln in report.details.runtime.status if ln.name == "merged")
    assert merged.value is True and report.codes() == set()
    # no base arm to compare: the fast path is measured on the adapter's logits alone
    fast = report.details.runtime.fast_path
    assert fast.used and fast.gap is not None and fast.gap <= fast.tolerance
    assert " prompts and a decoding step vs the adapter on each prompt alone: " in fast.reason


def test_audit_model_uses_the_probes_and_tolerance_given(tiny_llama: Path,
                                                         trained_adapter: Path) -> None:
    """One probe and a tolerance no logit moves: R005 fails on exactly that probe, and R004
    probes the base arm under the active adapter's name ('default')."""
    model, _, tok = loaded(tiny_llama, trained_adapter)
    report = audit_model(model, tokenizer=tok, probes=["Title: Mug"], logit_tol=1e9)
    r005 = next(c for c in report.checks if c.code == "R005")
    assert r005.status == "fail" and r005.message.endswith(" (tolerance 1e+09)")
    assert report.details.runtime.probe["prompts"] == 1
    r004 = next(c for c in report.checks if c.code == "R004")
    assert r004.status == "pass" and r004.evidence["path"] == "disable_adapter()"


def test_r004_with_a_separate_base_leaves_several_active_adapters_active(
        tiny_llama: Path, trained_adapter: Path, tmp_path: Path) -> None:
    """Two adapters active at once: R004's adapter side is the model as it is (both), as R005's,
    and the audit leaves both active (it once ran set_adapter(active_adapter), keeping one)."""
    other = rewrite(copy_adapter(trained_adapter, tmp_path / "other"), scale_b(-3.0))
    model, _, tok = loaded(tiny_llama, trained_adapter)
    model.load_adapter(str(other), adapter_name="other")
    model.base_model.set_adapter(["default", "other"])
    clean = load_base(tiny_llama).model
    enc = tok("Title: Mug", return_tensors="pt")
    with torch.inference_mode():
        gap = float((clean(**enc).logits[0] - model(**enc).logits[0]).abs().max())
    report = audit_model(model, base=clean, tokenizer=tok, probes=["Title: Mug"])
    r004 = next(c for c in report.checks if c.code == "R004")
    assert r004.status == "pass" and r004.evidence["path"] == "separate model"
    assert r004.evidence["max_abs_diff"] == pytest.approx(gap, rel=1e-5)
    assert model.get_model_status().active_adapters == ["default", "other"]


def test_an_adapter_loaded_by_transformers_is_audited(tiny_llama: Path,
                                                      trained_adapter: Path) -> None:
    """transformers' own `model.load_adapter` (no PeftModel, no `active_adapter` attribute):
    the R checks run on it as on a PeftModel, R004 on the adapters switched off."""
    base = load_base(tiny_llama)
    base.model.load_adapter(str(trained_adapter))
    model = base.model.eval()
    assert not hasattr(model, "active_adapter") and not isinstance(model, PeftModel)
    report = audit_model(model, tokenizer=base.tokenizer, probes=["Title: Mug"])
    checks = {c.code: c for c in report.checks}
    assert checks["R005"].status == "pass" and checks["R005"].evidence["max_abs_diff"] > 1e-2
    assert checks["R004"].status == "pass"
    assert checks["R004"].evidence["path"] == "disable_adapter()"
    assert checks["R004"].evidence["max_abs_diff"] == checks["R005"].evidence["max_abs_diff"]
    # no get_base_model() either: a clean second base is probed, the model itself is refused
    clean = load_base(tiny_llama).model
    r004 = next(c for c in audit_model(model, base=clean, tokenizer=base.tokenizer,
                                       probes=["Title: Mug"]).checks if c.code == "R004")
    assert r004.status == "pass" and r004.evidence["path"] == "separate model"
    own = next(c for c in audit_model(model, base=model, tokenizer=base.tokenizer).checks
               if c.code == "R004")
    assert own.status == "fail" and own.evidence["same_object"] is True
