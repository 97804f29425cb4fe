"""Broken adapters made from a healthy one: each reproduces one known cause of 'no effect'."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS = "adapter_model.safetensors"
Tensors = dict[str, torch.Tensor]


def copy_adapter(src: Path, dst: Path) -> Path:
    """A private copy of an adapter folder to break."""
    shutil.copytree(src, dst)
    return dst


def rewrite(adapter: Path, fn: Callable[[Tensors], Tensors]) -> Path:
    """Load every tensor, apply `fn`, save the file back as PEFT would."""
    tensors = fn(load_file(str(adapter / WEIGHTS)))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(adapter / WEIGHTS),
              metadata={"format": "pt"})
    return adapter


def edit_config(adapter: Path, **changes: object) -> Path:
    """Change fields of adapter_config.json."""
    path = adapter / "adapter_config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))
    return adapter


def zero_b(t: Tensors) -> Tensors:
    """Every lora_B zero: what an adapter saved before training looks like."""
    return {k: torch.zeros_like(v) if ".lora_B." in k else v for k, v in t.items()}


def zero_b_layer(layer: int) -> Callable[[Tensors], Tensors]:
    """lora_B zero in one transformer block only (gradient never reached it)."""
    tag = f".{layer}."
    return lambda t: {k: torch.zeros_like(v) if ".lora_B." in k and tag in k else v
                      for k, v in t.items()}


def scale_b(factor: float) -> Callable[[Tensors], Tensors]:
    """lora_B multiplied by `factor` (a tiny update when factor is tiny)."""
    return lambda t: {k: v * factor if ".lora_B." in k else v for k, v in t.items()}


def nan_one(t: Tensors) -> Tensors:
    """One NaN in the first lora_A tensor."""
    out = dict(t)
    key = sorted(k for k in t if ".lora_A." in k)[0]
    out[key] = t[key].clone()
    out[key].view(-1)[0] = float("nan")
    return out


def double_prefix(t: Tensors) -> Tensors:
    """Keys wrapped twice (base_model.model.base_model.model....): saved from a wrapped model."""
    return {"base_model.model." + k: v for k, v in t.items()}


def add_lm_head(rows: int, hidden: int) -> Callable[[Tensors], Tensors]:
    """A saved lm_head with `rows` vocabulary rows (modules_to_save / resized embeddings)."""
    return lambda t: {**t, "base_model.model.lm_head.weight": torch.randn(rows, hidden)}


def add_tokens(adapter: Path, n: int = 40) -> Path:
    """Save a tokenizer with `n` added tokens beside the adapter (base not resized)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(adapter))
    tok.add_tokens([f"<new_tok_{i}>" for i in range(n)])
    tok.save_pretrained(str(adapter))
    return adapter


def config_only_base(base: Path, dst: Path) -> Path:
    """A base folder with config.json only (no weights): layout known, ‖W‖ unknown."""
    dst.mkdir(parents=True)
    shutil.copy(base / "config.json", dst / "config.json")
    return dst
