"""run_ab_test: the user's decisive test, made impossible to get wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from _ab_helpers import REFS, TITLES, merged_dir, zero_adapter  # noqa: F401

from ftdiag.abtest.local import ABConfig, run_ab_test
from ftdiag.model.load import load_adapter, load_base
from ftdiag.prompts.records import Record
from ftdiag.prompts.template import PromptTemplate
from ftdiag.runmeta import META_FILE

RECORDS = [Record(t, r) for t, r in zip(TITLES, REFS, strict=True)]


def cfg(adapter: Path, base: Path, **kw: object) -> ABConfig:
    return ABConfig(adapter_dir=adapter, base=str(base), max_new_tokens=8, **kw)  # type: ignore[arg-type]


def test_trained_adapter_gives_different_outputs(tiny_llama: Path,
                                                 trained_adapter: Path) -> None:
    res = run_ab_test(cfg(trained_adapter, tiny_llama), RECORDS)
    s = res.summary
    assert res.report.command == "ab-test"
    assert "B001" not in res.report.codes() and res.report.exit_code() == 0
    assert s.n == 4 and s.identical == 0 and s.identical_share == 0.0
    assert set(s.mean_new_tokens) == {"base", "adapter"}
    for key in ("rouge_l", "token_f1", "hit_max_share"):  # shares, per arm
        value = getattr(s, key)
        assert set(value) == {"base", "adapter"} and all(0 <= v <= 1 for v in value.values())
    assert s.generation_config["do_sample"] is False and s.generation_config["max_new_tokens"] == 8
    assert s.ref_nll is not None and s.ref_nll["adapter"] < s.ref_nll["base"]
    row = res.rows[0]
    assert row.outputs["base"] != row.outputs["adapter"] and not row.identical
    assert row.first_divergent_token is not None
    assert json.dumps(res.report.to_dict())


def test_zero_b_adapter_is_b001(tiny_llama: Path, zero_adapter: Path) -> None:  # noqa: F811
    res = run_ab_test(cfg(zero_adapter, tiny_llama), RECORDS)
    assert {"B001", "A003", "R005"} <= res.report.codes()
    assert res.summary.identical == 4 and res.report.exit_code() == 1
    assert all(r.identical and r.first_divergent_token is None for r in res.rows)


def test_mutated_object_as_base_arm_is_r004(tiny_llama: Path, trained_adapter: Path) -> None:
    loaded = load_base(tiny_llama)
    model = load_adapter(loaded, trained_adapter)  # PEFT injected LoRA into loaded.model
    res = run_ab_test(cfg(trained_adapter, tiny_llama), RECORDS, model=model,
                      tokenizer=loaded.tokenizer, base_model=loaded.model)
    r004 = [c for c in res.report.checks if c.code == "R004"]
    assert r004[0].status == "fail" and res.report.exit_code() == 1
    # ab-test used disable_adapter() instead, so the texts it shows are still honest
    assert res.summary.identical == 0


def test_a_clean_separate_base_object_is_accepted(tiny_llama: Path,
                                                  trained_adapter: Path) -> None:
    loaded = load_base(tiny_llama)
    model = load_adapter(loaded, trained_adapter)
    clean = load_base(tiny_llama).model
    res = run_ab_test(cfg(trained_adapter, tiny_llama), RECORDS[:2], model=model,
                      tokenizer=loaded.tokenizer, base_model=clean)
    assert "R004" not in res.report.codes()
    mixed = run_ab_test(cfg(trained_adapter, tiny_llama), RECORDS[:2], model=model,
                        tokenizer=loaded.tokenizer)
    assert [r.outputs for r in res.rows] == [r.outputs for r in mixed.rows]


def test_base_arm_that_returns_adapter_logits_is_caught(tiny_llama: Path,
                                                        trained_adapter: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """If disabling LoRA ever silently failed, the logit probe would still catch it."""
    import contextlib

    import ftdiag.adapters.probe as probe
    import ftdiag.generation.arms as gen

    loaded = load_base(tiny_llama)
    model = load_adapter(loaded, trained_adapter)
    for module in (gen, probe):  # every place that switches the adapters off
        monkeypatch.setattr(module, "adapters_off", lambda m: contextlib.nullcontext())
    monkeypatch.setattr(gen, "active_lora_layers", lambda m: 0)
    res = run_ab_test(cfg(trained_adapter, tiny_llama), RECORDS[:1], model=model,
                      tokenizer=loaded.tokenizer)
    assert any(c.code == "R004" and c.status == "fail" for c in res.report.checks)


def test_merged_matches_adapter_within_tolerance(tiny_llama: Path, trained_adapter: Path,
                                                 merged_dir: Path) -> None:  # noqa: F811
    res = run_ab_test(cfg(trained_adapter, tiny_llama, merged_dir=merged_dir), RECORDS)
    b002 = next(c for c in res.report.checks if c.code == "B002")
    assert b002.status == "pass" and b002.evidence["max_abs_logit_diff"] < 1e-3
    assert all(r.outputs["merged"] == r.outputs["adapter"] for r in res.rows)


def test_merged_from_another_adapter_is_b002(tiny_llama: Path, trained_adapter: Path,
                                             merged_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    from safetensors.torch import load_file, save_file

    bad = Path(shutil.copytree(merged_dir, tmp_path / "bad"))
    weights = load_file(str(bad / "model.safetensors"))
    key = next(k for k in weights if "q_proj" in k)
    weights[key] = weights[key] + 0.5 * torch.randn_like(weights[key])
    save_file(weights, str(bad / "model.safetensors"), metadata={"format": "pt"})
    res = run_ab_test(cfg(trained_adapter, tiny_llama, merged_dir=bad), RECORDS[:2])
    assert "B002" in res.report.codes() and res.report.exit_code() == 1


def test_max_identical_share(tiny_llama: Path, trained_adapter: Path,
                             zero_adapter: Path) -> None:  # noqa: F811
    ok = run_ab_test(cfg(trained_adapter, tiny_llama, max_identical=0.0), RECORDS[:2])
    assert "B001" not in ok.report.codes()
    bad = run_ab_test(cfg(zero_adapter, tiny_llama, max_identical=0.5), RECORDS[:2])
    assert "B001" in bad.report.codes()


def test_forced_template_differs_from_recorded_is_r010(tiny_llama: Path, trained_adapter: Path,
                                                       tmp_path: Path) -> None:
    adapter = Path(shutil.copytree(trained_adapter, tmp_path / "adapter"))
    (adapter / META_FILE).write_text(json.dumps({"template": "Title: {title}\nDescription: "}))
    used = run_ab_test(cfg(adapter, tiny_llama), RECORDS[:1])
    assert used.rows[0].prompt == "Title: Steel bottle\nDescription: "
    assert "R010" not in used.report.codes()
    forced = run_ab_test(cfg(adapter, tiny_llama, template=PromptTemplate("Q: {title}\nA:",
                                                                          "file:x")),
                         RECORDS[:1])
    assert "R010" in forced.report.codes()


def test_sampling_is_r008_and_train_mode_is_r003(tiny_llama: Path,
                                                 trained_adapter: Path) -> None:
    loaded = load_base(tiny_llama)
    model = load_adapter(loaded, trained_adapter)
    model.train()
    res = run_ab_test(cfg(trained_adapter, tiny_llama, do_sample=True, temperature=0.8),
                      RECORDS[:2], model=model, tokenizer=loaded.tokenizer)
    assert {"R003", "R008"} <= res.report.codes()
    assert not model.training
    assert res.summary.generation_config["do_sample"] is True


def test_check_batch_and_long_titles(tiny_llama: Path, trained_adapter: Path) -> None:
    long = Record("steel bottle " * 400)
    res = run_ab_test(cfg(trained_adapter, tiny_llama, check_batch=True, batch_size=2),
                      [*RECORDS[:2], long])
    b004 = next(c for c in res.report.checks if c.code == "B004")
    assert b004.status == "pass"
    assert res.rows[2].truncated and not res.rows[0].truncated
    assert res.summary.warnings
    assert res.summary.rouge_l is not None and res.summary.n_with_reference == 2


def test_progress_is_reported(tiny_llama: Path, trained_adapter: Path) -> None:
    seen: list[tuple[int, int]] = []
    run_ab_test(cfg(trained_adapter, tiny_llama), RECORDS,
                progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (8, 8)
