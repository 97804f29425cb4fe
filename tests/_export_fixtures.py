"""Exports made the way users make them: PEFT merge_and_unload, saved in fp32 or bf16."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM


def merge_to(base: Path, adapter: Path, out: Path, dtype: torch.dtype = torch.float32) -> Path:
    """Merge `adapter` into `base` with PEFT and save the result in `dtype`."""
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.to(dtype).save_pretrained(str(out))
    return out


def save_base_as(base: Path, out: Path, dtype: torch.dtype = torch.float32) -> Path:
    """The base itself saved as if it were the merged export (the merge wrote the base)."""
    AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).to(dtype) \
        .save_pretrained(str(out))
    return out


def copy_weight(src: Path, dst: Path, key: str) -> Path:
    """Put `src`'s tensor `key` into `dst`'s model.safetensors (a partially merged export)."""
    donor = load_file(str(src / "model.safetensors"))
    tensors = load_file(str(dst / "model.safetensors"))
    tensors[key] = donor[key]
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst
