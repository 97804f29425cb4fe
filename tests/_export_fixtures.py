"""Exports made the way users make them: PEFT merge_and_unload, saved in fp32 or bf16."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM


def status(report, code: str) -> str:  # type: ignore[no-untyped-def]
    """The status of the check `code` in a check-export report."""
    return next(c.status for c in report.checks if c.code == code)


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


def llama_cpp_permute(weights: Any, n_head: int, n_head_kv: int | None = None) -> Any:
    """llama.cpp's q/k row permutation, copied from its converter (not ftdiag's own).

    `LlamaModel.permute` in conversion/llama.py of llama.cpp 0c1e57098 (convert_hf_to_gguf.py
    before the split), whose convert_lora_to_gguf.py applies it to lora_b too.
    """
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def write_merged_gguf(model_dir: Path, out: Path, qtype: str = "F32") -> Path:
    """A model folder converted as llama.cpp's convert_hf_to_gguf does (names, q/k permuted)."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file as load_np

    cfg = json.loads((model_dir / "config.json").read_text())
    n, heads = cfg["num_hidden_layers"], cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads") or heads
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_type("model")
    writer.add_block_count(n)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_embedding_length(cfg["hidden_size"])
    names = gguf.TensorNameMap(gguf.MODEL_ARCH.LLAMA, n)
    quant = gguf.GGMLQuantizationType[qtype]
    for key, value in load_np(str(model_dir / "model.safetensors")).items():
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        assert name is not None, key
        data = value.astype(np.float32)
        if key.endswith(("q_proj.weight", "k_proj.weight")):
            data = llama_cpp_permute(data, heads, None if "q_proj" in key else kv)
        if data.ndim == 2 and quant != gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, gguf.quants.quantize(data, quant), raw_dtype=quant)
        else:
            writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def write_lora_gguf(adapter: Path, base: Path, out: Path, *, alpha: float | None = None,
                    arch: str = "llama", general_type: str = "adapter",
                    adapter_type: str = "lora", drop: int = 0, rank_cut: int = 0) -> Path:
    """A PEFT adapter written in llama.cpp's convert_lora_to_gguf layout (lora_b q/k permuted).

    `alpha` overrides adapter.lora.alpha; `drop` leaves out the last pairs; `rank_cut` keeps
    fewer rank components. The defaults give a faithful conversion.
    """
    import gguf

    from ftdiag.export.lora import read_lora

    cfg = json.loads((base / "config.json").read_text())
    heads = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads") or heads
    lora = read_lora(adapter)
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_type(general_type)
    writer.add_string(gguf.Keys.Adapter.TYPE, adapter_type)
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA,
                       float(lora.config["lora_alpha"] if alpha is None else alpha))
    names = gguf.TensorNameMap(gguf.MODEL_ARCH.LLAMA, cfg["num_hidden_layers"])
    updates = list(lora.updates.values())
    for upd in updates[:len(updates) - drop]:
        name = f"{names.get_name(upd.module)}.weight"
        a, b = upd.a, upd.b
        if upd.module.endswith(("q_proj", "k_proj")):
            b = llama_cpp_permute(b, heads, None if upd.module.endswith("q_proj") else kv)
        if rank_cut:
            a, b = a[:-rank_cut], b[:, :-rank_cut]
        writer.add_tensor(f"{name}.lora_a", a.copy())
        writer.add_tensor(f"{name}.lora_b", b.copy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
