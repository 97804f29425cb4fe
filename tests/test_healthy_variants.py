"""Healthy adapters of every legal shape pass check-adapter with no fail and no warn finding."""

from __future__ import annotations

from pathlib import Path

import pytest
from _variants import VARIANTS, build_adapter
from typer.testing import CliRunner

from ftdiag.adapters.check import check_adapter
from ftdiag.cli.app import app

ARCHS = ["llama", "gpt2", "qwen2"]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_healthy_variant_passes(variant: str, arch: str, request: pytest.FixtureRequest,
                                tmp_path: Path) -> None:
    base = Path(request.getfixturevalue(f"tiny_{arch}"))
    adapter = build_adapter(base, tmp_path / variant, arch, variant=variant)
    report = check_adapter(adapter, base, probes=["Title: mug\n"])
    assert report.verdict == "pass", [(f.code, f.message) for f in report.findings]
    assert not report.findings and report.layers_run == ["S", "R"]


# what llama.cpp's converter takes as it is (its rows in adapters.target.RULES): no rsLoRA, DoRA,
# modules_to_save, per-module alpha or trained base biases
LLAMA_CPP_VARIANTS = ["plain", "all_linear", "layers_to_transform", "bin", "second_adapter",
                      "training_mode"]


@pytest.mark.parametrize("variant", LLAMA_CPP_VARIANTS)
def test_healthy_variant_passes_layer_t_for_llama_cpp(variant: str, tiny_llama: Path,
                                                      tmp_path: Path) -> None:
    adapter = build_adapter(tiny_llama, tmp_path / variant, "llama", variant=variant)
    report = check_adapter(adapter, tiny_llama, static_only=True, runtime="llama.cpp")
    assert "T" in report.layers_run
    assert report.verdict == "pass", [(f.code, f.message) for f in report.findings]


@pytest.mark.parametrize("peft_type", ["IA3", "PROMPT_TUNING"])
def test_other_peft_types_exit_2_with_a_clear_message(peft_type: str, tiny_llama: Path,
                                                      tmp_path: Path) -> None:
    from peft import IA3Config, PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama))
    cfg = (IA3Config(target_modules=["k_proj", "v_proj", "down_proj"],
                     feedforward_modules=["down_proj"], task_type="CAUSAL_LM")
           if peft_type == "IA3" else PromptTuningConfig(task_type="CAUSAL_LM",
                                                         num_virtual_tokens=4))
    get_peft_model(model, cfg).save_pretrained(str(tmp_path / "a"))
    result = CliRunner().invoke(app, ["check-adapter", str(tmp_path / "a"), "--json"])
    assert result.exit_code == 2 and f"unsupported PEFT type {peft_type}" in result.stderr
