"""Facts about a live (loaded) PEFT model: its LoRA layers, which are on, how to switch them off.

The one owner of these facts; the R checks (adapters/runtime.py) and generation (generate.py)
both ask here. No checks and no findings in this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed batch


def lora_layers(model: Any) -> list[tuple[str, Any]]:
    """(name, module) of every PEFT tuner layer inside `model` (empty for a plain model)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]


def _switchable(model: Any) -> list[Any]:
    """Tuner layers plus modules_to_save wrappers: what `disable_adapter()` switches off."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils.other import AuxiliaryTrainingWrapper

    return [m for m in model.modules()
            if isinstance(m, (BaseTunerLayer, AuxiliaryTrainingWrapper))]


def active_lora_layers(model: Any) -> int:
    """How many tuner layers would change this model's output right now (not disabled)."""
    return sum(1 for _, m in lora_layers(model) if not getattr(m, "disable_adapters", False))


def is_peft(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def can_mix(model: Any) -> bool:
    """True when PEFT's mixed batch works: LoRA layers present, none merged, no DoRA, and every
    modules_to_save wrapper around a module type PEFT can mix (Linear, Embedding, Conv)."""
    import torch.nn as nn
    from peft.tuners.lora import LoraLayer
    from peft.utils.other import AuxiliaryTrainingWrapper

    layers = [m for _, m in lora_layers(model)]
    lora = [m for m in layers if isinstance(m, LoraLayer)]
    if not is_peft(model) or not lora or len(lora) != len(layers):
        return False
    mixable = (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    if any(isinstance(m, AuxiliaryTrainingWrapper)
           and not isinstance(getattr(m, "original_module", None), mixable)
           for m in model.modules()):
        return False
    return not any(m.merged or any(m.use_dora.values()) for m in lora)


def lora_b_nonzero(model: Any) -> bool:
    """Whether any lora_B (or lora_embedding_B) parameter holds a non-zero value."""
    return any(bool(p.detach().any()) for n, p in model.named_parameters()
               if ".lora_B." in n or "lora_embedding_B" in n)


@contextlib.contextmanager
def adapters_off(model: Any) -> Iterator[None]:
    """The base arm: every tuner layer of `model` disabled for the block, switches restored."""
    layers = _switchable(model)
    before = [bool(getattr(m, "disable_adapters", False)) for m in layers]
    for m in layers:
        m.enable_adapters(False)
    try:
        yield
    finally:
        for m, was_off in zip(layers, before, strict=True):
            m.enable_adapters(not was_off)


@contextlib.contextmanager
def preserved_state(model: Any) -> Iterator[None]:
    """Eval mode inside the block; afterwards train flags and adapter switches restored."""
    training = {m: m.training for m in model.modules()}
    layers = _switchable(model)
    disabled = {m: bool(getattr(m, "disable_adapters", False)) for m in layers}
    model.eval()
    try:
        yield
    finally:
        for m, t in training.items():
            m.training = t
        for m, d in disabled.items():
            if bool(getattr(m, "disable_adapters", d)) != d:
                m._disable_adapters = d  # not enable_adapters(): that also flips requires_grad
