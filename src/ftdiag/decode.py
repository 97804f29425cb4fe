"""Greedy decoding for ab-test: a finished row leaves the batch, the shared prompt prefix runs once.

Gives the tokens `model.generate(do_sample=False)` gives on the same left-padded rows (the tests
compare both), with less work: HF's loop keeps computing a row that reached EOS until its whole
batch ends, and computes the template's common prefix once per row. Here a row that emits EOS is
dropped from the KV cache, the mask and the PEFT `adapter_names` in step, and the token prefix
every prompt shares is run once per adapter name, its KV copied into each row.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def common_prefix(rows: list[list[int]]) -> int:
    """Length of the token prefix every row shares (at most the shortest row minus one)."""
    if not rows:
        return 0
    limit = min(len(r) for r in rows) - 1
    n = 0
    while n < limit and all(r[n] == rows[0][n] for r in rows):
        n += 1
    return n


def kv_bytes_per_token(model: Any) -> int:
    """KV cache bytes one row adds per token (all layers, keys and values)."""
    cfg: Any = getattr(model, "config", None)
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    layers = int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0) or 1)
    heads = int(getattr(cfg, "num_attention_heads", 0) or getattr(cfg, "n_head", 0) or 1)
    kv_heads = int(getattr(cfg, "num_key_value_heads", 0) or heads)
    hidden = int(getattr(cfg, "hidden_size", 0) or getattr(cfg, "n_embd", 0) or heads)
    head_dim = int(getattr(cfg, "head_dim", 0) or hidden // heads)
    size = next(model.parameters()).element_size()
    return 2 * layers * kv_heads * head_dim * size


def _cache_kwarg(model: Any) -> str:
    """`cache` (transformers >= 5.2x) or `past_key_values` (older) on the model's forward."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(inner.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _runs(names: list[str]) -> list[tuple[str, int, int]]:
    """(name, start, stop) of each run of equal adapter names."""
    out: list[tuple[str, int, int]] = []
    for i, name in enumerate(names):
        if out and out[-1][0] == name:
            out[-1] = (name, out[-1][1], i + 1)
        else:
            out.append((name, i, i + 1))
    return out


def _sliced_mixed_batch(layer: Any, original: Any, keys: list[str], x: torch.Tensor, *args: Any,
                        adapter_names: list[str], **kwargs: Any) -> torch.Tensor:
    """PEFT's LoRA `_mixed_batch_forward` on contiguous row runs: slices, not index lists.

    The same operations on the same rows as PEFT's (so the same numbers), without turning the
    Python index lists into tensors in every layer at every step. Anything else (a name on
    non-contiguous rows, a LoRA variant) goes to PEFT's own method.
    """
    runs = _runs(adapter_names)
    if len(runs) != len(set(adapter_names)) or any(n in layer.lora_variant for n, _, _ in runs):
        return original(x, *args, adapter_names=adapter_names, **kwargs)
    for key in keys:
        kwargs.pop(key, None)
    result = layer.base_layer(x, *args, **kwargs)
    for name, start, stop in runs:
        if name not in layer.lora_A:  # "__base__" included
            continue
        lora_a, lora_b = layer.lora_A[name], layer.lora_B[name]
        sub = x[start:stop].to(lora_a.weight.dtype)
        out = lora_b(lora_a(layer.lora_dropout[name](sub))) * layer.scaling[name]
        result[start:stop] += out.to(result.dtype)
    return result


@contextlib.contextmanager
def sliced_mixed_batches(model: Any) -> Iterator[None]:
    """Inside the block, the model's LoRA Linear layers mix adapters by row slices."""
    try:
        from peft.tuners.lora.layer import VARIANT_KWARG_KEYS, Linear
    except ImportError:  # another PEFT layout: keep PEFT's method
        yield
        return
    patched = [m for m in model.modules()
               if type(m) is Linear and "_mixed_batch_forward" not in vars(m)]
    for m in patched:
        setattr(m, "_mixed_batch_forward", functools.partial(  # noqa: B010 (mypy: method)
            _sliced_mixed_batch, m, m._mixed_batch_forward, list(VARIANT_KWARG_KEYS)))
    try:
        yield
    finally:
        for m in patched:
            del m._mixed_batch_forward


def _left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = 1
    return ids, mask


def _shared_prefix(model: Any, rows: list[list[int]], names: list[str] | None, key: str,
                   cache: Any) -> int:
    """Run the tokens every row shares once per adapter name; copy that KV into every row."""
    import torch

    skip = common_prefix(rows)
    if not skip:
        return 0
    device = next(model.parameters()).device
    kinds: list[str | None] = list(dict.fromkeys(names)) if names else [None]
    prefix = torch.tensor([rows[0][:skip]] * len(kinds), device=device)
    extra = {"adapter_names": kinds} if names else {}
    model(input_ids=prefix, use_cache=True, logits_to_keep=1, **{key: cache}, **extra)
    pick = [kinds.index(n) for n in names] if names else [0] * len(rows)
    cache.batch_select_indices(torch.tensor(pick, device=device))
    return skip


def greedy(model: Any, rows: list[list[int]], *, max_new_tokens: int, eos: set[int],
           pad_id: int, adapter_names: list[str] | None = None,
           share_prefix: bool = True) -> list[list[int]]:
    """New token ids for each prompt row (ending with the EOS token when one was emitted).

    rows: prompt token ids (no padding); adapter_names: PEFT's mixed batch, one name per row.
    """
    import torch

    if not rows:
        return []
    names = list(adapter_names) if adapter_names else None
    with torch.inference_mode(), sliced_mixed_batches(model) if names else \
            contextlib.nullcontext():
        return _greedy(model, rows, max_new_tokens, eos, pad_id, names, share_prefix)


def _greedy(model: Any, rows: list[list[int]], max_new_tokens: int, eos: set[int], pad_id: int,
            names: list[str] | None, share_prefix: bool) -> list[list[int]]:
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    key = _cache_kwarg(model)
    cache = DynamicCache(config=model.config)
    skip = _shared_prefix(model, rows, names, key, cache) if share_prefix else 0
    ids, tail_mask = _left_pad([r[skip:] for r in rows], pad_id)
    ids, tail_mask = ids.to(device), tail_mask.to(device)
    mask = torch.cat([torch.ones((len(rows), skip), dtype=torch.long, device=device), tail_mask], 1)
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)[:, skip:]
    out: list[list[int]] = [[] for _ in rows]
    live = list(range(len(rows)))
    for step in range(max_new_tokens):
        extra = {"adapter_names": names} if names else {}
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                       logits_to_keep=1, **{key: cache}, **extra).logits
        nxt = logits[:, -1, :].argmax(-1)
        keep = []
        for j, tok in enumerate(nxt.tolist()):
            out[live[j]].append(tok)
            if tok not in eos:
                keep.append(j)
        if not keep or step == max_new_tokens - 1:
            break
        if len(keep) < len(live):  # finished rows leave the batch, cache and names in step
            idx = torch.tensor(keep, device=device)
            cache.batch_select_indices(idx)
            mask, nxt, pos = mask[idx], nxt[idx], pos[idx]
            live = [live[j] for j in keep]
            names = [names[j] for j in keep] if names else None
        ids = nxt[:, None]
        mask = torch.cat([mask, mask.new_ones((len(live), 1))], 1)
        pos = pos[:, -1:] + 1
    return out
