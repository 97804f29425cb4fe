"""Map adapter tensor names onto modules of the base, built on the meta device (no weights)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftdiag.errors import FtdiagError

log = logging.getLogger(__name__)

PREFIX = "base_model.model."
LORA_RE = re.compile(
    r"^(?P<module>.+?)\.(?P<part>lora_A|lora_B|lora_embedding_A|lora_embedding_B|"
    r"lora_magnitude_vector)(?:\.(?P<name>[^.]+))?(?:\.weight)?$"
)
FULL_MODULES = ("embed_tokens", "lm_head", "wte", "embed_out", "word_embeddings")


@dataclass(frozen=True)
class BaseModule:
    """One leaf module of the base: kind and (out_features, in_features) as LoRA sees them."""

    kind: str  # linear | conv1d | embedding | other
    out_features: int
    in_features: int


@dataclass
class BaseLayout:
    """The base's module tree from its config: names, kinds, shapes, vocab size."""

    model_dir: Path
    config: dict[str, Any]
    modules: dict[str, BaseModule] = field(default_factory=dict)

    @property
    def vocab_size(self) -> int | None:
        v = self.config.get("vocab_size") or self.config.get("text_config", {}).get("vocab_size")
        return int(v) if v else None


@dataclass
class AdapterModule:
    """The LoRA tensors saved for one module, by part (lora_A, lora_B, ...)."""

    name: str  # module path inside the base (prefix stripped)
    keys: dict[str, str] = field(default_factory=dict)  # part -> tensor key in the file


LLAMA_LIKE = {"llama", "mistral", "qwen2", "qwen3"}


def base_layout(model_dir: Path) -> BaseLayout:
    """The base's adaptable modules: computed for Llama-like configs, else built on meta."""
    try:
        raw = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FtdiagError(f"cannot read {model_dir / 'config.json'}: {exc}") from exc
    layout = BaseLayout(model_dir, raw)
    layout.modules = llama_modules(raw) or meta_modules(model_dir)
    return layout


def llama_modules(cfg: dict[str, Any]) -> dict[str, BaseModule] | None:
    """Module shapes of a Llama-family decoder straight from config.json (no torch import).

    Tests check this equals the meta-device model's modules; other architectures use that.
    """
    if cfg.get("model_type") not in LLAMA_LIKE:
        return None
    try:
        h, inter = int(cfg["hidden_size"]), int(cfg["intermediate_size"])
        heads, vocab = int(cfg["num_attention_heads"]), int(cfg["vocab_size"])
        kv = int(cfg.get("num_key_value_heads") or heads)
        hd = int(cfg.get("head_dim") or h // heads)
        n = int(cfg["num_hidden_layers"])
    except (KeyError, TypeError, ValueError):
        return None
    mods = {"model.embed_tokens": BaseModule("embedding", h, vocab)}
    shapes = {"self_attn.q_proj": (heads * hd, h), "self_attn.k_proj": (kv * hd, h),
              "self_attn.v_proj": (kv * hd, h), "self_attn.o_proj": (h, heads * hd),
              "mlp.gate_proj": (inter, h), "mlp.up_proj": (inter, h), "mlp.down_proj": (h, inter)}
    for i in range(n):
        for name, (out_f, in_f) in shapes.items():
            mods[f"model.layers.{i}.{name}"] = BaseModule("linear", out_f, in_f)
    mods["lm_head"] = BaseModule("linear", vocab, h)
    return mods


def meta_modules(model_dir: Path) -> dict[str, BaseModule]:
    """Build the base on the meta device (no memory, no weight files needed) and list modules."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        cfg = AutoConfig.from_pretrained(str(model_dir))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(cfg)
    except Exception as exc:  # unknown model_type, broken config: many kinds
        raise FtdiagError(f"cannot build the base from {model_dir}/config.json: {exc}") from exc
    out: dict[str, BaseModule] = {}
    for name, mod in model.named_modules():
        info = _module_info(mod)
        if info is not None:
            out[name] = info
    return out


def _module_info(mod: Any) -> BaseModule | None:
    """(kind, out, in) of a leaf module LoRA can adapt; None for containers."""
    import torch.nn as nn

    if isinstance(mod, nn.Linear):
        return BaseModule("linear", mod.out_features, mod.in_features)
    if isinstance(mod, nn.Embedding):
        return BaseModule("embedding", mod.embedding_dim, mod.num_embeddings)
    if type(mod).__name__ == "Conv1D" and hasattr(mod, "weight"):
        nx, nf = mod.weight.shape  # GPT-2 Conv1D stores [in, out]
        return BaseModule("conv1d", int(nf), int(nx))
    return None


def group_lora_keys(keys: list[str]) -> tuple[dict[str, AdapterModule], list[str]]:
    """Group tensor names by adapted module; also return keys that are not LoRA parts."""
    modules: dict[str, AdapterModule] = {}
    other: list[str] = []
    for key in keys:
        m = LORA_RE.match(key)
        if not m:
            other.append(key)
            continue
        name = m.group("module").removeprefix(PREFIX)
        modules.setdefault(name, AdapterModule(name)).keys[m.group("part")] = key
    return modules, other


def unmatched_hint(names: list[str], layout: BaseLayout) -> str:
    """Say which prefix would make the adapter's module names match the base, if any."""
    for name in names[:20]:
        parts = name.split(".")
        for i in range(1, len(parts)):
            if ".".join(parts[i:]) in layout.modules:
                return f"strip the prefix '{'.'.join(parts[:i])}.' from the keys"
        for base_name in layout.modules:
            if base_name.endswith("." + name):
                return f"add the prefix '{base_name.removesuffix(name)}' to the keys"
    return "the adapter was saved for another architecture or with a different wrapper"


def target_matches(name: str, config: dict[str, Any]) -> bool:
    """Does module `name` match target_modules (PEFT's rules: regex string, suffix list)?"""
    targets = config.get("target_modules")
    if not targets:
        return False
    exclude = config.get("exclude_modules")
    if exclude and (re.fullmatch(exclude, name) if isinstance(exclude, str)
                    else any(name == e or name.endswith("." + e) for e in exclude)):
        return False
    if isinstance(targets, str):
        if targets == "all-linear":
            return not name.endswith("lm_head")
        ok = re.fullmatch(targets, name) is not None
    else:
        ok = any(name == t or name.endswith("." + t) for t in targets)
    layers = config.get("layers_to_transform")
    if ok and layers is not None:
        found = re.search(r"\.(\d+)\.", name)
        wanted = {layers} if isinstance(layers, int) else set(layers)
        ok = found is not None and int(found.group(1)) in wanted
    return ok


def expected_modules(layout: BaseLayout, config: dict[str, Any]) -> list[str]:
    """Base modules (Linear/Conv1D/Embedding) that target_modules selects."""
    linear_only = config.get("target_modules") == "all-linear"
    return [n for n, m in layout.modules.items()
            if target_matches(n, config) and (not linear_only or m.kind in ("linear", "conv1d"))]
