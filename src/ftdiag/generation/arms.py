"""Batched generation over arms (base, adapter, merged) with one copy of the base weights.

The base arm never comes from a second load nor from the object PEFT mutated: on a PeftModel it is
PEFT's mixed batch (`adapter_names=["__base__", ...]`, both arms in one forward pass) or, where
mixing is impossible (merged or DoRA layers), `disable_adapter()`. That mixed batch and
`generation.decode` are ftdiag's fast path; `GenSettings.fast` says which parts of it the R
audit found exact, and when none is, the reference path runs (each arm alone, HF `generate`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import GenerationConfig

from ftdiag.distributed import gather, split, world
from ftdiag.model.live import BASE, active_lora_layers, adapters_off, can_mix, is_peft
from ftdiag.progress import ProgressFn
from ftdiag.timing import phase

log = logging.getLogger(__name__)

SAMPLING_KEYS = ("do_sample", "temperature", "top_p", "top_k", "typical_p", "min_p",
                 "num_beams", "repetition_penalty", "no_repeat_ngram_size")
KV_SHARE = 2  # one batch's KV cache may take 1/KV_SHARE of the weights' bytes (auto batch size)
KV_FLOOR = 64 * 2**20  # ... and at least this many bytes
MIN_BATCH = 4


@dataclass
class FastPath:
    """Which of ftdiag's fast paths (mixed batch, shared prefix, reserved KV cache) gave the
    reference path's logits (each prompt alone; `disable_adapter()` for the base) on the probes.

    A gap is ftdiag's own inconsistency, never a user finding: the run takes the fastest exact
    path, or the reference path when none is (`used` False).
    """

    used: bool = True
    gap: float | None = None  # max |Δlogit| fast vs reference (None: not measured)
    tolerance: float | None = None
    reason: str = "not measured"
    mixed: bool = True  # base and adapter rows in one batch (False: each arm in its own)
    share_prefix: bool = True  # the prompts' common prefix run once (False: pads before all)

    @property
    def note(self) -> str:
        """One sentence for the report's notes when the fast path was not used ('' when it was)."""
        if self.used:
            return ""
        what = ("could not run" if self.gap is None else
                f"differed from its reference path (max |Δlogit| {self.gap:.3g})")
        return (f"ftdiag's fast path {what}, so this run used the reference path (each arm "
                f"alone, disable_adapter() for the base, HF generate): {self.reason}")


@dataclass
class GenSettings:
    """What to generate: greedy unless do_sample."""

    max_new_tokens: int = 128
    batch_size: int = 0  # titles per batch; 0: from the workload (auto_batch)
    do_sample: bool = False
    temperature: float = 1.0
    seed: int = 0
    fast: FastPath = field(default_factory=FastPath)  # the fast path R's audit found exact


@dataclass
class Arm:
    """One side of the comparison: a model and which adapter it runs (None = plain model)."""

    name: str
    model: Any
    adapter: str | None = None  # "__base__" = adapters off, "default" = that adapter


@dataclass
class ArmOutput:
    """One generated completion: new token ids (EOS cut), text, whether it hit max_new_tokens."""

    ids: list[int]
    text: str
    hit_max: bool


@dataclass
class GenPlan:
    """How the arms were run (shown in the report so nobody has to trust it)."""

    mixed_batch: bool
    calls: int = 0
    rows: int = 0
    notes: list[str] = field(default_factory=list)


def generation_config(model: Any, tokenizer: Any, s: GenSettings) -> tuple[GenerationConfig,
                                                                            dict[str, Any]]:
    """The effective config (greedy unless asked) and what it overrode from generation_config."""
    from transformers import GenerationConfig

    own = getattr(model, "generation_config", None)
    eos = getattr(own, "eos_token_id", None) if own is not None else None
    if eos is None:
        eos = tokenizer.eos_token_id
    cfg = GenerationConfig(
        max_new_tokens=s.max_new_tokens, do_sample=s.do_sample, num_beams=1,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=eos,
        bos_token_id=getattr(own, "bos_token_id", None),
    )
    if s.do_sample:
        cfg.temperature = s.temperature
        cfg.top_k = 0
        cfg.top_p = 1.0
    overridden: dict[str, Any] = {}
    if own is not None:
        plain = GenerationConfig()
        for key in SAMPLING_KEYS:
            theirs = getattr(own, key, None)
            if theirs is not None and theirs != getattr(plain, key, None):
                overridden[key] = theirs
    return cfg, overridden


def eos_ids(cfg: GenerationConfig) -> set[int]:
    eos = cfg.eos_token_id
    return set(eos) if isinstance(eos, list) else ({eos} if eos is not None else set())


def context_length(model: Any, tokenizer: Any) -> int:
    """The context window (max_position_embeddings / n_positions), capped by the tokenizer."""
    config = getattr(model, "config", None)
    ctx = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    tok_max = getattr(tokenizer, "model_max_length", None)
    values = [v for v in (ctx, tok_max) if isinstance(v, int) and 0 < v < 10**7]
    return min(values) if values else 2048


def auto_batch(model: Any, longest: int, titles: int, arms: int, max_new: int) -> int:
    """Titles per batch: the fewest even batches whose KV cache each fits the budget.

    longest: tokens in the longest prompt. The budget (half the weights' bytes, at least
    KV_FLOOR) bounds the memory a batch adds over the loaded model (the naive A/B adds a whole
    second model); within it, one big batch is fastest: each decoding step reads every weight
    once, whatever the batch.
    """
    from ftdiag.generation.decode import kv_bytes_per_token

    title = kv_bytes_per_token(model) * (longest + max_new) * max(1, arms)
    budget = max(KV_FLOOR, sum(p.numel() * p.element_size() for p in model.parameters())
                 // KV_SHARE)
    batches = -(-title * titles // budget)  # ceil: fewest batches within the budget
    return max(MIN_BATCH, -(-titles // max(1, batches)))


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _split(new: torch.Tensor, cfg: GenerationConfig, tokenizer: Any) -> ArmOutput:
    ids = new.tolist()
    stop = eos_ids(cfg)
    cut = next((i for i, t in enumerate(ids) if t in stop), None)
    kept = ids if cut is None else ids[:cut]
    return ArmOutput(kept, tokenizer.decode(kept, skip_special_tokens=True), cut is None)


def _generate_rows(model: Any, tokenizer: Any, rows: list[list[int]], cfg: GenerationConfig,
                   adapter_names: list[str] | None, s: GenSettings) -> list[ArmOutput]:
    """Completions of the prompts' token rows (one adapter name per row when mixing);
    greedy through generation.decode unless the fast path is off (then HF generate)."""
    import torch

    if s.fast.used and not cfg.do_sample:  # rows leave at EOS, shared prefix once
        from ftdiag.generation.decode import greedy

        new = greedy(model, rows, max_new_tokens=cfg.max_new_tokens or 0, eos=eos_ids(cfg),
                     pad_id=cfg.pad_token_id or 0, adapter_names=adapter_names,
                     share_prefix=s.fast.share_prefix)
        return [_split(torch.tensor(ids, dtype=torch.long), cfg, tokenizer) for ids in new]
    enc = tokenizer.pad({"input_ids": rows}, padding=True,
                        return_tensors="pt").to(_device(model))
    kwargs: dict[str, Any] = {"adapter_names": adapter_names} if adapter_names else {}
    with torch.inference_mode(), phase("decode"):  # HF generate: prefill counted as decode
        out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                             generation_config=cfg, **kwargs)
    width = enc["input_ids"].shape[1]
    return [_split(row[width:], cfg, tokenizer) for row in out]


def arm_groups(arms: list[Arm], mix: bool = True) -> list[list[Arm]]:
    """Arms sharing one mixable PeftModel run together (unless not `mix`); the others alone."""
    groups: dict[int, list[Arm]] = {}
    alone: list[list[Arm]] = []
    for arm in arms:
        if mix and arm.adapter is not None and can_mix(arm.model):
            groups.setdefault(id(arm.model), []).append(arm)
        else:
            alone.append([arm])
    return [*groups.values(), *alone]


@contextlib.contextmanager
def arm_context(arm: Arm) -> Iterator[None]:
    """Run one arm alone: base arm with the adapters switched off, adapter arm as is."""
    if arm.adapter == BASE:
        with adapters_off(arm.model):
            if active_lora_layers(arm.model):  # cannot happen unless PEFT changes: refuse
                raise RuntimeError("LoRA layers still active inside the base arm")
            yield
    else:
        if arm.adapter is not None and is_peft(arm.model):
            arm.model.set_adapter(arm.adapter)
        yield


def generate_arms(tokenizer: Any, prompts: list[str], arms: list[Arm], settings: GenSettings,
                  progress: ProgressFn | None = None) -> tuple[dict[str, list[ArmOutput]], GenPlan,
                                                             dict[str, Any]]:
    """Greedy (or seeded sampled) completions of every prompt under every arm."""
    import torch

    cfg, overridden = generation_config(arms[0].model, tokenizer, settings)
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(ids[i]))  # batches need little padding
    results: dict[str, list[ArmOutput | None]] = {a.name: [None] * len(prompts) for a in arms}
    groups = arm_groups(arms, settings.fast.used and settings.fast.mixed)
    plan = GenPlan(mixed_batch=any(len(g) > 1 for g in groups))
    total, done = len(prompts) * len(arms), 0
    rank, size = world()
    bs = settings.batch_size or auto_batch(arms[0].model, max(map(len, ids), default=1),
                                           len(prompts), len(arms), settings.max_new_tokens)
    for group in groups:
        torch.manual_seed(settings.seed)
        for start in range(0, len(order), bs):
            plan.calls += 1  # one batch of the whole workload; each rank runs its slice
            plan.rows += len(order[start:start + bs]) * len(group)
            idx = split(order[start:start + bs], rank, size)
            if not idx:
                continue
            batch = [ids[i] for i in idx]
            if len(group) > 1:
                names = [a.adapter or BASE for a in group for _ in idx]
                outs = _generate_rows(group[0].model, tokenizer, batch * len(group), cfg, names,
                                      settings)
            else:
                with arm_context(group[0]):
                    outs = _generate_rows(group[0].model, tokenizer, batch, cfg, None, settings)
            for k, arm in enumerate(group):
                for j, i in enumerate(idx):
                    results[arm.name][i] = outs[k * len(idx) + j]
            done += len(outs)
            if progress:
                progress(done, total)
    mine = [(i, {name: got[i] for name, got in results.items()}) for i in range(len(prompts))
            if results[arms[0].name][i] is not None]
    final: dict[str, list[ArmOutput]] = {a.name: [] for a in arms}
    for _, row in sorted(gather(mine), key=lambda item: item[0]):
        for name, out in row.items():
            if out is not None:
                final[name].append(out)
    effective = {"do_sample": cfg.do_sample, "num_beams": 1, "max_new_tokens": cfg.max_new_tokens,
                 "seed": settings.seed, "pad_token_id": cfg.pad_token_id,
                 "eos_token_id": cfg.eos_token_id, "use_cache": True}
    if settings.do_sample:
        effective.update(temperature=settings.temperature, top_k=0, top_p=1.0)
    return final, plan, {"effective": effective, "overridden_from_model": overridden}


def generate_one(tokenizer: Any, prompt: str, arm: Arm, settings: GenSettings) -> ArmOutput:
    """One prompt alone, no padding, through the plain (non-mixed) path: the B004 reference."""
    import torch

    cfg, _ = generation_config(arm.model, tokenizer, settings)
    torch.manual_seed(settings.seed)
    with arm_context(arm):
        return _generate_rows(arm.model, tokenizer, [tokenizer(prompt)["input_ids"]], cfg,
                              None, settings)[0]


def prompt_logits(arm: Arm, tokenizer: Any, prompts: list[str]) -> list[torch.Tensor]:
    """Full-prompt logits (fp32, CPU) of each prompt under one arm, one prompt at a time."""
    import torch

    outs = []
    for prompt in prompts:
        enc = tokenizer(prompt, return_tensors="pt").to(_device(arm.model))
        with torch.inference_mode(), arm_context(arm):
            logits = arm.model(**enc).logits[0]
        outs.append(logits.float().cpu())
    return outs
