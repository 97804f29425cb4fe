"""check-adapter end to end on the embedded SmolLM2-135M (static + runtime layers)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ftdiag.adapters.check import check_adapter
from ftdiag.model.load import EMBEDDED_NAME, load_tokenizer, resolve_model_dir

pytestmark = pytest.mark.slow


def build_adapter(out: Path, b_scale: float) -> Path:
    """A LoRA adapter for SmolLM2 with lora_B ~ N(0, b_scale) (0 = saved before training)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base_dir = resolve_model_dir(EMBEDDED_NAME)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    cfg = LoraConfig(r=8, lora_alpha=16, task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    peft_model = get_peft_model(model, cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, b_scale) if b_scale else p.zero_()
    peft_model.save_pretrained(str(out))
    peft_model.peft_config["default"].base_model_name_or_path = EMBEDDED_NAME
    peft_model.peft_config["default"].save_pretrained(str(out))
    tok = load_tokenizer(base_dir)
    tok.pad_token = tok.unk_token  # SmolLM2 ships pad == eos; a careful recipe sets a distinct pad
    tok.save_pretrained(str(out))
    return out


def test_smollm2_healthy_adapter_passes(tmp_path: Path) -> None:
    adapter = build_adapter(tmp_path / "healthy", b_scale=0.01)
    report = check_adapter(adapter)  # base from base_model_name_or_path = 'smollm2-135m'
    assert report.layers_run == ["S", "R"]
    assert report.verdict == "pass", [f.to_dict() for f in report.findings]
    static = report.details.static
    assert static.adapted_modules == static.base.expected_modules == 30 * 4
    assert static.totals.rel_median > 1e-4
    assert report.details.runtime.probe["max_abs_diff"] > 1e-3


def test_smollm2_zero_b_adapter_is_a003(tmp_path: Path) -> None:
    adapter = build_adapter(tmp_path / "zero", b_scale=0.0)
    report = check_adapter(adapter, EMBEDDED_NAME, static_only=True)
    assert report.codes() == {"A003"} and report.verdict == "fail"
