"""Runtime measurements on a live PEFT model: logit probe (R005), loaded-vs-disk (R006), and
whether ftdiag's fast path gives its reference path's logits (`fast_path`)."""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ftdiag.generation.arms import FastPath
from ftdiag.model.live import BASE, adapters_off, can_mix, preserved_state

log = logging.getLogger(__name__)

PROBE_TITLES = ["Stainless steel water bottle", "Wireless bluetooth headphones",
                "Organic cotton t-shirt"]


@dataclass
class ProbeResult:
    """Adapter-on vs adapter-off next-token logits over the probe prompts (each prompt alone)."""

    max_abs_diff: float
    mean_kl: float
    greedy_changed: int
    prompts: int
    per_prompt: list[dict[str, Any]] = field(default_factory=list)
    off: list[Any] = field(default_factory=list, repr=False)  # adapters-off logits per prompt
    on: list[Any] = field(default_factory=list, repr=False)  # the model's logits as it is
    off_next: list[Any] = field(default_factory=list, repr=False)  # ... after its greedy token
    on_next: list[Any] = field(default_factory=list, repr=False)


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


def alone_logits(model: Any, rows: list[list[int]], *, step: bool = False
                 ) -> tuple[list[Any], list[Any]]:
    """Next-token logits (fp32, CPU) of each token row through its own forward: the reference
    path, with no batch, padding or adapter names to get wrong. step: also the logits after the
    row's greedy token, one cached step as HF `generate` takes it (else the second list is [])."""
    import torch

    from ftdiag.generation.decode import cache_kwarg, last

    device = next(model.parameters()).device
    key = cache_kwarg(model) if step else ""
    first, after = [], []
    with torch.inference_mode():
        for row in rows:
            ids = torch.tensor([row], device=device)
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=step,
                        logits_to_keep=last(ids))
            logits = out.logits[0, -1]
            first.append(logits.float().cpu())
            if step:
                token = logits.argmax().view(1, 1)
                cache = next((out[k] for k in ("cache", "past_key_values")
                              if out.get(k) is not None), None)  # name by version; None: none
                after.append(_after(model, ids, token, cache, key).float().cpu())
    return first, after


def _after(model: Any, ids: Any, token: Any, cache: Any, key: str) -> Any:
    """Next-token logits after `token`: one step on the row's cache, or the whole row again
    where the model keeps no cache or its cached step fails (cpmant's position bias)."""
    import torch

    if cache is not None:
        mask = torch.ones(1, ids.shape[1] + 1, dtype=ids.dtype, device=ids.device)
        try:
            return model(input_ids=token, attention_mask=mask, use_cache=True,
                         **{key: cache}).logits[0, -1]
        except Exception:  # the reference path must run on every model: take the long way
            log.debug("cached reference step failed; running the row again", exc_info=True)
    ids = torch.cat([ids, token], dim=1)
    return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1]


def logit_probe(model: Any, tokenizer: Any, prompts: list[str]) -> ProbeResult:
    """Next-token logits with the adapter as it is now vs inside adapters_off() (reference path)."""
    import torch

    rows: list[dict[str, Any]] = []
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    with preserved_state(model):
        on, on_next = alone_logits(model, ids, step=True)
        with adapters_off(model):
            off, off_next = alone_logits(model, ids, step=True)
    for prompt, a, b in zip(prompts, on, off, strict=True):
        la, lb = torch.log_softmax(a, -1), torch.log_softmax(b, -1)
        kl = float((la.exp() * (la - lb)).sum())
        rows.append({"prompt": prompt[-60:], "max_abs_diff": float((a - b).abs().max()),
                     "kl": kl, "greedy_adapter": int(a.argmax()), "greedy_base": int(b.argmax())})
    return ProbeResult(
        max_abs_diff=max((r["max_abs_diff"] for r in rows), default=0.0),
        mean_kl=sum(r["kl"] for r in rows) / max(len(rows), 1),
        greedy_changed=sum(r["greedy_adapter"] != r["greedy_base"] for r in rows),
        prompts=len(rows), per_prompt=rows, off=off, on=on, off_next=off_next, on_next=on_next)


def fast_path(model: Any, tokenizer: Any, prompts: list[str], on: tuple[list[Any], list[Any]],
              off: tuple[list[Any], list[Any]] | None) -> FastPath:
    """Whether the fast path gives the reference logits `on` (and `off`) on `prompts`, and after
    each row's greedy token: each a pair (prompt logits, logits after the greedy token) from
    `alone_logits(step=True)`.

    Fast: the prompts in one left-padded batch as ab-test decodes them (reserved KV cache, one
    decoding step). Tried fastest first, the first exact one wins: base and adapter rows mixed
    (when PEFT can mix them) or each arm in its own batch, each with the shared prefix run once,
    then without it. off: the adapters-off reference (None: only the adapter arm is compared).
    """
    import torch

    from ftdiag.generation.metrics import logit_gap

    half = next(model.parameters()).dtype != torch.float32
    rows = [tokenizer(p)["input_ids"] for p in prompts]
    arms = ([off] if off is not None else []) + [on]  # per arm: base (if any), adapter
    tokens = [[int(logits.argmax()) for logits in arm[0]] for arm in arms]
    ref = [x for arm in arms for x in arm[0]] + [x for arm in arms for x in arm[1]]
    versus = "disable_adapter() and the adapter" if off is not None else "the adapter"
    mixes = [True, False] if off is not None and can_mix(model) else [False]
    tries: list[FastPath] = []
    for mixed, share in [(m, s) for m in mixes for s in (True, False)]:
        path = ("mixed batch" if mixed else "batch per arm") + (", shared prefix" if share else "")
        try:
            with preserved_state(model):
                got = _fast_logits(model, tokenizer.pad_token_id or 0, rows, tokens, mixed, share)
        except Exception as exc:  # a fast path this model or PEFT cannot run
            log.debug("fast path failed", exc_info=True)
            tries.append(FastPath(False, None, None, f"the {path} raised "
                                                     f"{type(exc).__name__}: {str(exc)[:200]}"))
            continue
        gap = logit_gap(ref, got, atol=5e-2 if half else 1e-3, rtol=1e-2 if half else 1e-4)
        tries.append(FastPath(gap.within, gap.max_abs, gap.tolerance,
                              f"{path} of {len(prompts)} prompts and a decoding step vs {versus}"
                              f" on each prompt alone: max |Δlogit| {gap.max_abs:.3g} "
                              f"(tolerance {gap.tolerance:.3g})", mixed, share))
        if gap.within:
            break
    last = tries[-1]
    if last.used:
        last.reason = "; ".join(t.reason for t in reversed(tries))
        return last
    first = next((t for t in tries if t.gap is not None), tries[0])
    return FastPath(False, first.gap, first.tolerance, "; ".join(t.reason for t in tries))


def _fast_logits(model: Any, pad_id: int, rows: list[list[int]], tokens: list[list[int]],
                 mixed: bool, share: bool) -> list[Any]:
    """The fast path's logits in `fast_path`'s reference order: each arm's prompts (base arm
    first when `tokens` holds two arms), then each arm's decoding step feeding `tokens`."""
    from ftdiag.generation.decode import next_logits

    n = len(rows)
    if mixed:
        name = str(getattr(model, "active_adapter", "default"))
        return list(next_logits(model, rows * 2, pad_id, [BASE] * n + [name] * n, share,
                                then=[t for arm in tokens for t in arm]))
    parts = []
    for k, toks in enumerate(tokens):
        with adapters_off(model) if k == 0 and len(tokens) == 2 else contextlib.nullcontext():
            parts.append(list(next_logits(model, rows, pad_id, None, share, then=toks)))
    return [x for p in parts for x in p[:n]] + [x for p in parts for x in p[n:]]


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
