"""Runtime measurements on a live PEFT model: logit probe (R005) and loaded-vs-disk (R006)."""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ftdiag.model.live import adapters_off, preserved_state

log = logging.getLogger(__name__)

PROBE_TITLES = ["Stainless steel water bottle", "Wireless bluetooth headphones",
                "Organic cotton t-shirt"]


@dataclass
class ProbeResult:
    """Adapter-on vs adapter-off next-token logits over the probe prompts."""

    max_abs_diff: float
    mean_kl: float
    greedy_changed: int
    prompts: int
    per_prompt: list[dict[str, Any]] = field(default_factory=list)
    off: list[Any] = field(default_factory=list, repr=False)  # adapters-off logits per prompt


def default_probes(adapter_dir: str | Path | None, tokenizer: Any) -> list[str]:
    """Product titles rendered with the default template and the recorded one (if any)."""
    from ftdiag.errors import FtdiagError
    from ftdiag.prompts.template import load_template, recorded_template

    templates = [load_template()]
    if adapter_dir is not None and (rec := recorded_template(adapter_dir)) is not None:
        templates.insert(0, rec)
    prompts: list[str] = []
    for tpl in templates:
        for title in PROBE_TITLES:
            with contextlib.suppress(FtdiagError):
                text = tpl.render(title, tokenizer)
                if text not in prompts:
                    prompts.append(text)
    return prompts


def last_logits(model: Any, tokenizer: Any, texts: list[str],
                adapter_names: list[str] | None = None) -> list[Any]:
    """Next-token logits (fp32, CPU) of each text, in one batch that runs their shared prefix
    (the template's system part) once; adapter_names: a mixed batch, one name per text."""
    from ftdiag.generation.decode import next_logits

    if not texts:
        return []
    rows = [tokenizer(t)["input_ids"] for t in texts]
    return list(next_logits(model, rows, tokenizer.pad_token_id or 0, adapter_names))


def logit_probe(model: Any, tokenizer: Any, prompts: list[str]) -> ProbeResult:
    """Next-token logits with the adapter as it is now vs inside adapters_off()."""
    import torch

    rows: list[dict[str, Any]] = []
    with preserved_state(model):
        on = last_logits(model, tokenizer, prompts)
        with adapters_off(model):
            off = last_logits(model, tokenizer, prompts)
    for prompt, a, b in zip(prompts, on, off, strict=True):
        la, lb = torch.log_softmax(a, -1), torch.log_softmax(b, -1)
        kl = float((la.exp() * (la - lb)).sum())
        rows.append({"prompt": prompt[-60:], "max_abs_diff": float((a - b).abs().max()),
                     "kl": kl, "greedy_adapter": int(a.argmax()), "greedy_base": int(b.argmax())})
    return ProbeResult(
        max_abs_diff=max((r["max_abs_diff"] for r in rows), default=0.0),
        mean_kl=sum(r["kl"] for r in rows) / max(len(rows), 1),
        greedy_changed=sum(r["greedy_adapter"] != r["greedy_base"] for r in rows),
        prompts=len(rows), per_prompt=rows, off=off)


@dataclass
class DiskMatch:
    """How one loaded adapter's LoRA weights compare with the adapter file."""

    adapter: str
    dropped: list[str]  # on disk, not in the model
    differing: list[str]  # present in both, values differ
    max_diff: float
    compared: int

    @property
    def ok(self) -> bool:
        return not self.dropped and not self.differing and self.compared > 0


def compare_with_disk(model: Any, adapter_dir: str | Path) -> list[DiskMatch]:
    """Per adapter of the PeftModel: on-disk LoRA tensors it lacks or holds differently."""
    import torch
    from peft.utils import get_peft_model_state_dict

    from ftdiag.adapters.files import read_adapter
    from ftdiag.adapters.keys import LORA_RE

    files = read_adapter(adapter_dir)
    if files.weights is None:
        return []
    disk = {k: t for k, t in files.tensors() if LORA_RE.match(k)}
    out: list[DiskMatch] = []
    for name in getattr(model, "peft_config", {}):
        live = get_peft_model_state_dict(model, adapter_name=name, save_embedding_layers=False)
        dropped = [k for k in disk if k not in live]
        differing: list[str] = []
        worst = 0.0
        for k, t in disk.items():
            if k not in live:
                continue
            a, b = torch.from_numpy(np.array(t)), live[k].detach().float().cpu()
            if a.shape != b.shape:
                differing.append(k)
                worst = math.inf
                continue
            d = float((a - b).abs().max()) if a.numel() else 0.0
            worst = max(worst, d)
            scale = float(a.abs().max()) if a.numel() else 0.0
            if not torch.isfinite(torch.tensor(d)) or d > 1e-2 * scale + 1e-6:
                differing.append(k)
        out.append(DiskMatch(name, dropped, differing, worst, len(disk) - len(dropped)))
    return out
