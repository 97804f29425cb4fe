"""Checks on a live training run, shared by `ftdiag train` and `FtdiagCallback`.

After the first backward pass: did any LoRA parameter get a non-zero, finite gradient (L009)?
On the batches the model is fed: do the examples have trainable labels (D002), is EOS one of
them (D003)? Nothing here imports torch at module level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ftdiag.findings import Finding, finding, passed
from ftdiag.training.data import IGNORE, eos_check, labels_check


@dataclass
class GradStats:
    """LoRA gradients after one backward pass."""

    lora_tensors: int  # trainable LoRA tensors
    nonzero: int  # of them, with a finite non-zero gradient
    norm: float  # total L2 norm of those gradients
    finite: bool
    frozen: int = 0  # LoRA tensors with requires_grad=False


def lora_grad_stats(model: Any) -> GradStats:
    """How many LoRA tensors got a non-zero, finite gradient, and the total gradient norm."""
    total, nonzero, frozen, sq = 0, 0, 0, 0.0
    finite = True
    for name, p in model.named_parameters():
        if "lora_" not in name:
            continue
        if not p.requires_grad:
            frozen += 1
            continue
        total += 1
        if p.grad is None:
            continue
        norm = float(p.grad.detach().float().norm())
        if not math.isfinite(norm):
            finite = False
        elif norm > 0:
            nonzero += 1
            sq += norm * norm
    return GradStats(total, nonzero, math.sqrt(sq), finite, frozen)


GC_HINT = ("check that the LoRA weights are trainable, lora_dropout < 1 and target_modules; "
           "with gradient checkpointing call model.enable_input_require_grads()")


def gradient_check(stats: GradStats) -> Finding:
    """L009: fail when no LoRA parameter received a usable gradient after step 1."""
    ev: dict[str, Any] = {"lora_tensors": stats.lora_tensors, "nonzero": stats.nonzero,
          "grad_norm": stats.norm, "finite": stats.finite, "frozen": stats.frozen}
    frozen = f" ({stats.frozen} LoRA tensors are frozen)" if stats.frozen else ""
    if stats.lora_tensors == 0:
        return finding("L009", f"the model has no trainable LoRA parameters{frozen}",
                       hint="check target_modules against the model's modules, and that the "
                            "adapter is not frozen (requires_grad=False)", **ev)
    if not stats.finite:
        return finding("L009", "LoRA gradients are NaN/Inf after the first step",
                       hint="lower the learning rate, check the data and the dtype", **ev)
    if stats.nonzero == 0:
        return finding("L009", f"after step 1 none of the {stats.lora_tensors} LoRA tensors "
                       f"received a non-zero gradient{frozen}: training would not change the "
                       "model",
                       hint=GC_HINT, **ev)
    ok = passed("L009", f"{stats.nonzero} of {stats.lora_tensors} LoRA tensors got a "
                f"gradient after step 1 (norm {stats.norm:.3g})", **ev)
    ok.check = "LoRA gradients flow"  # a pass row named for what it proves
    return ok


@dataclass
class LabelStats:
    """What the model was fed in the batches seen so far (one row = one example)."""

    batches: int = 0
    examples: int = 0
    no_labels: int = 0  # examples without a single trainable label token
    label_tokens: int = 0
    eos_in_inputs: int = 0  # examples whose input_ids contain EOS at all
    eos_trained: int = 0  # examples with EOS among their trainable labels

    def add(self, input_ids: Any, labels: Any, eos_id: int | None) -> None:
        """Count one batch: `input_ids` and `labels` are [batch, seq] tensors (labels unshifted)."""
        if labels.dim() == 1:
            labels = labels.unsqueeze(0)
        if input_ids is not None and input_ids.dim() == 1:
            input_ids = input_ids.unsqueeze(0)
        trained = labels != IGNORE
        per_row = trained.sum(dim=-1)
        self.batches += 1
        self.examples += int(labels.shape[0])
        self.no_labels += int((per_row == 0).sum())
        self.label_tokens += int(per_row.sum())
        if eos_id is not None:
            self.eos_trained += int(((labels == eos_id) & trained).any(dim=-1).sum())
            if input_ids is not None:
                self.eos_in_inputs += int((input_ids == eos_id).any(dim=-1).sum())


def batch_checks(stats: LabelStats, eos_id: int | None, *,
                 eos_source: str = "tokenizer") -> list[Finding]:
    """D002 and D003 on the batches the trainer actually fed the model (EOS from eos_source)."""
    where = f" in the first {stats.batches} training batches"
    checks = [labels_check(
        stats.examples, stats.no_labels, where,
        hint="every label is -100: check the collator / completion mask and max_length",
        hint_some="those examples train nothing: check truncation and the completion mask",
        label_tokens=stats.label_tokens)]
    if eos_id is None:
        return checks
    if stats.eos_in_inputs:
        hint = ("EOS is in the inputs but masked: a collator that masks pad labels masks EOS "
                "too when pad_token == eos_token; set a distinct pad token")
    else:
        hint = ("no example the model saw contains EOS: append tokenizer.eos_token to every "
                "text, or raise max_length if truncation cuts it off")
    checks.append(eos_check(stats.examples, stats.eos_trained, eos_id, hint=hint,
                            eos_in_inputs=stats.eos_in_inputs, eos_source=eos_source))
    return checks
