"""PEFT adapters of many legal shapes, built in-process with small random lora_B (as if trained)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

ARCH_TARGETS = {"llama": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"],
                "gpt2": ["c_attn", "c_proj"]}
# a module_to_save that is not one side of a tied embedding pair (A013 covers that case)
UNTIED_SAVE = {"llama": ["lm_head"], "qwen2": ["norm"], "gpt2": ["ln_f"]}


def variant_kwargs(name: str, arch: str) -> dict[str, Any]:
    """LoraConfig arguments of one healthy variant (besides r/alpha/targets)."""
    targets = ARCH_TARGETS[arch]
    return {
        "plain": {},
        "dora": {"use_dora": True},
        "rslora": {"use_rslora": True},
        "modules_to_save": {"modules_to_save": UNTIED_SAVE[arch]},
        "all_linear": {"target_modules": "all-linear"},
        "layers_to_transform": {"layers_to_transform": [1]},
        "patterns": {"rank_pattern": {targets[0]: 2}, "alpha_pattern": {targets[-1]: 32}},
        "bias_all": {"bias": "all"},
        "bin": {},
        "second_adapter": {},
        "training_mode": {"inference_mode": False},
    }[name]


VARIANTS = ["plain", "dora", "rslora", "modules_to_save", "all_linear", "layers_to_transform",
            "patterns", "bias_all", "bin", "second_adapter", "training_mode"]


def build_adapter(base: Path, out: Path, arch: str, *, variant: str = "plain", seed: int = 0,
                  **lora: Any) -> Path:
    """Save a PEFT LoRA adapter of `variant` on `base` with random non-zero lora_B."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    opts: dict[str, Any] = {"r": 4, "lora_alpha": 8, "target_modules": ARCH_TARGETS[arch],
                            "task_type": "CAUSAL_LM", "fan_in_fan_out": arch == "gpt2"}
    opts.update(variant_kwargs(variant, arch) if variant in VARIANTS else {})
    opts.update(lora)
    peft_model = get_peft_model(model, LoraConfig(**opts))
    if variant == "second_adapter":
        peft_model.add_adapter("other", LoraConfig(**{**opts, "r": 2}))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name or "lora_embedding_B" in name:
                p.normal_(0.0, 0.05)
    peft_model.save_pretrained(
        str(out), safe_serialization=variant != "bin",
        selected_adapters=["default", "other"] if variant == "second_adapter" else None)
    return out
