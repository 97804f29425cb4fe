"""Greedy decoding for ab-test: a finished row leaves the batch, the shared prompt prefix runs once.

Gives the tokens `model.generate(do_sample=False)` gives on the same left-padded rows (the tests
compare both), with less work: HF's loop keeps computing a row that reached EOS until its whole
batch ends, and computes the template's common prefix once per row. Here a row that emits EOS is
dropped from the KV cache, the mask and the adapter names in step, and the token prefix every
prompt shares is run once per adapter name, its KV copied into each row (where the pads that then
sit between prefix and tail change nothing: `prefix_is_exact`). The KV cache is reserved up front
(`reserved_cache`), and base and adapter rows share each forward through LoRA layers set up once
per decode (`row_adapters`) rather than PEFT's per-forward hooks. The R audit checks this path
against plain forwards on every model before ab-test trusts it (`adapters.probe.fast_path`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ftdiag.timing import phase

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


def _config_int(cfg: Any, *names: str) -> int:
    """The first of `names` set to a positive int on the config (0 when none is).

    A per-layer field of a heterogeneous config (transformers 5) raises on global access: skipped.
    """
    for name in names:
        try:
            value = getattr(cfg, name, None)
        except Exception:  # AmbiguousGlobalPerLayerAttributeError and kin
            continue
        if isinstance(value, int) and value > 0:
            return value
    return 0


def kv_bytes_per_token(model: Any) -> int:
    """KV cache bytes one row adds per token (all layers, keys and values; an estimate where the
    config leaves a size per layer)."""
    cfg: Any = getattr(model, "config", None)
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    layers = _config_int(cfg, "num_hidden_layers", "n_layer") or 1
    heads = _config_int(cfg, "num_attention_heads", "n_head") or 1
    kv_heads = _config_int(cfg, "num_key_value_heads") or heads
    hidden = _config_int(cfg, "hidden_size", "n_embd") or heads
    head_dim = _config_int(cfg, "head_dim") or max(1, hidden // heads)
    size = next(model.parameters()).element_size()
    return 2 * layers * kv_heads * head_dim * size


def cache_kwarg(model: Any) -> str:
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


class RowAdapters:
    """The adapter each batch row goes through, set before each forward (None: PEFT as is).

    `kwargs()` is what the forward call itself carries: nothing when the LoRA layers were
    patched to read `names`, else PEFT's own `adapter_names`. Setting `names` also computes its
    runs of equal names once for all layers.
    """

    def __init__(self, native: bool) -> None:
        self.native = native
        self._names: list[str] | None = None
        self.runs: list[tuple[str, int, int]] = []
        self.contiguous = True  # each name on one run of rows

    @property
    def names(self) -> list[str] | None:
        return self._names

    @names.setter
    def names(self, value: list[str] | None) -> None:
        if value is not self._names:
            self._names = value
            self.runs = _runs(value) if value else []
            self.contiguous = len(self.runs) == len(set(value or []))

    def kwargs(self) -> dict[str, Any]:
        return {"adapter_names": self._names} if self.native and self._names else {}


def _rows_forward(layer: Any, rows: RowAdapters, x: torch.Tensor, *args: Any,
                  **kwargs: Any) -> torch.Tensor:
    """A LoRA Linear's forward with each row through `rows.names`: PEFT's mixed batch by slices.

    The same operations on the same rows as PEFT's `_mixed_batch_forward` (so the same numbers)
    on contiguous runs of equal names, without PEFT's per-call hooks or index lists; in eval
    mode (required by `row_adapters`) dropout is the identity and is skipped, and plain
    `nn.Linear` LoRA factors are applied with `F.linear`, as their forward does. Anything else
    (no names, a name on non-contiguous rows, a LoRA variant) goes to PEFT's own forward; an
    input whose first dimension is not the batch's rows is refused (PEFT would mix wrong rows).
    """
    import torch
    import torch.nn.functional as F

    names = rows.names
    if names is None or layer.disable_adapters or layer.merged:
        return type(layer).forward(layer, x, *args, **kwargs)
    if x.shape[0] != len(names):  # tokens flattened (OPT's MLP) or routed (MoE experts)
        raise ValueError(f"a LoRA layer got {x.shape[0]} rows for {len(names)} adapter names: "
                         "its input is not one row per sequence, so rows cannot be mixed")
    if not rows.contiguous or any(n in layer.lora_variant for n, _, _ in rows.runs):
        return type(layer).forward(layer, x, *args, adapter_names=names, **kwargs)
    result = layer.base_layer(x, *args, **kwargs)
    for name, start, stop in rows.runs:
        if name not in layer.lora_A:  # "__base__" included
            continue
        lora_a, lora_b = layer.lora_A[name], layer.lora_B[name]
        sub = x[start:stop].to(lora_a.weight.dtype)
        if type(lora_a) is type(lora_b) is torch.nn.Linear:
            out = F.linear(F.linear(sub, lora_a.weight, lora_a.bias), lora_b.weight, lora_b.bias)
        else:
            out = lora_b(lora_a(sub))
        result[start:stop] += (out * layer.scaling[name]).to(result.dtype)
    return result


@contextlib.contextmanager
def row_adapters(model: Any) -> Iterator[RowAdapters]:
    """Inside the block, set `.names` on the yielded object to mix adapters by batch row.

    PEFT's `adapter_names=` registers and removes a hook on every LoRA layer at every forward,
    walking all modules each time (about 20 ms per decoding step of a 30-layer model on CPU).
    Here the LoRA Linear layers are patched once for the block. A model with other LoRA layer
    kinds or modules_to_save wrappers keeps PEFT's path (`native`).
    """
    try:
        from peft.tuners.lora.layer import Linear, LoraLayer
        from peft.utils.other import AuxiliaryTrainingWrapper
    except ImportError:  # another PEFT layout: PEFT's own path
        yield RowAdapters(native=True)
        return
    mixed: list[Any] = [m for m in model.modules()
                        if isinstance(m, (LoraLayer, AuxiliaryTrainingWrapper))]
    if model.training or any(type(m) is not Linear or "forward" in vars(m) for m in mixed):
        yield RowAdapters(native=True)
        return
    rows = RowAdapters(native=False)
    for m in mixed:  # an instance attribute: nn.Module.__call__ finds it before the class's
        setattr(m, "forward", functools.partial(_rows_forward, m, rows))  # noqa: B010
    try:
        yield rows
    finally:
        for m in mixed:
            del m.forward


def check_names(model: Any, names: list[str]) -> None:
    """PEFT's check of `adapter_names`: each name but "__base__" is some LoRA layer's adapter."""
    from ftdiag.model.live import BASE

    known: set[str] = set()
    for m in model.modules():
        for attr in ("lora_A", "lora_embedding_A"):
            known |= set(getattr(m, attr, {}) or {})
    unknown = {n for n in names if n != BASE} - known
    if unknown:
        raise ValueError("Trying to infer with non-existing adapter(s): "
                         + ", ".join(sorted(unknown)))


def reserved_cache(model: Any, capacity: int) -> Any:
    """A `DynamicCache` whose full-attention layers write into buffers reserved up front.

    HF's `DynamicLayer` concatenates each step's keys and values onto the whole cache (a copy of
    the cache per layer per step: about an eighth of ab-test's decoding time on CPU); here each
    step copies only its new token into place. Sliding-window and other layer kinds stay as HF
    builds them.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    class ReservedLayer(DynamicLayer):
        """Keys/values in [batch, heads, capacity, dim] buffers; `keys`/`values` view the filled
        part."""

        def __init__(self) -> None:
            super().__init__()
            self.length = 0
            self.buffers: tuple[torch.Tensor, torch.Tensor] | None = None

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
                   **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            start, stop = self.length, self.length + key_states.shape[-2]
            if self.buffers is None:
                self._refill((key_states[:, :, :0], value_states[:, :, :0]),
                             max(capacity, stop + stop // 4))
            elif stop > self.buffers[0].shape[-2]:
                self._refill(self._filled(), stop + stop // 4)
            assert self.buffers is not None
            for buf, new in zip(self.buffers, (key_states, value_states), strict=True):
                buf[:, :, start:stop].copy_(new)
            self.length = stop
            self.keys, self.values = self._filled()
            return self.keys, self.values

        def _refill(self, filled: tuple[torch.Tensor, torch.Tensor], size: int) -> None:
            """Fresh [batch, heads, size, dim] buffers starting with `filled` (the cached
            positions); the unfilled rest stays untouched, so its pages are never faulted in."""
            def fresh(part: torch.Tensor) -> torch.Tensor:
                buf = part.new_empty((*part.shape[:2], size, part.shape[-1]))
                buf[:, :, :part.shape[-2]].copy_(part)
                return buf

            self.buffers = (fresh(filled[0]), fresh(filled[1]))

        def _filled(self) -> tuple[torch.Tensor, torch.Tensor]:
            """Views of the buffers' filled part (what `keys`/`values` hold)."""
            assert self.buffers is not None
            return self.buffers[0][:, :, :self.length], self.buffers[1][:, :, :self.length]

        def get_seq_length(self) -> int:
            return self.length

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            """Keep the rows at `indices`: only their filled part is copied, into fresh buffers."""
            if self.buffers is None or not self.length:
                return
            keys, values = self._filled()
            self._refill((keys.index_select(0, indices), values.index_select(0, indices)),
                         self.buffers[0].shape[-2])
            self.keys, self.values = self._filled()

        def crop(self, tokens_to_remove: int) -> None:
            if tokens_to_remove > 0:
                raise ValueError("crop takes the number of tokens to remove, as a negative int")
            self.length = max(0, self.length + tokens_to_remove)
            if self.buffers is not None:
                self.keys, self.values = self._filled()

    cache = DynamicCache(config=model.config)
    cache.layers = [ReservedLayer() if type(layer) is DynamicLayer else layer
                    for layer in cache.layers]
    return cache


def _kv_only(layer: Any) -> bool:
    """A cache layer holding only keys and values (full attention or a sliding window), or none.

    Recurrent and convolution states, indexers and the like are not: their rows are not all in
    `keys`/`values` (HF's row selection misses them) and pads change them.
    """
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    # ReservedLayer: reserved_cache's full-attention layer; DummyLayer: no KV of its own
    return type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) or \
        type(layer).__name__ in ("ReservedLayer", "DummyLayer")


def prefix_is_exact(cache: Any, slots: int) -> bool:
    """Whether pads between the shared prefix and a row's tail leave every layer's output as is.

    True when each cache layer attends to every cached slot: full attention, a layer with no KV of
    its own, or a sliding window (or chunk) no shorter than `slots`. A window counts KV slots, not
    positions, so pads inside it hide real tokens from the row (Gemma2/3, Mistral, Phi-3 with a
    prompt longer than the window); recurrent layers see the pads too.
    """
    return all(_kv_only(layer) and int(getattr(layer, "sliding_window", slots)) >= slots
               for layer in cache.layers)


def _can_drop_rows(cache: Any) -> bool:
    """Whether finished rows can leave the cache (every layer's state is its keys and values)."""
    return all(_kv_only(layer) and hasattr(layer, "batch_select_indices")
               for layer in cache.layers)


def last(ids: torch.Tensor) -> int | torch.Tensor:
    """`logits_to_keep` for the last position only.

    Over several positions, as an index tensor: the int form slices the hidden states to a
    strided view, and the LM head then runs as a batched matmul against the broadcast weight
    (about 8x the time of the plain matmul a gathered, contiguous row gets on CPU).
    """
    import torch

    width = ids.shape[-1]
    return 1 if width == 1 else torch.tensor([width - 1], device=ids.device)


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows right-aligned in one [rows, longest] batch of `pad_id`, and their mask."""
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
                   cache: Any, mix: RowAdapters) -> int:
    """Run the tokens every row shares once per adapter name; copy that KV into every row."""
    import torch

    skip = common_prefix(rows)
    if not skip:
        return 0
    device = next(model.parameters()).device
    kinds: list[str] = list(dict.fromkeys(names)) if names else [""]
    prefix = torch.tensor([rows[0][:skip]] * len(kinds), device=device)
    mix.names = kinds if names else None
    model(input_ids=prefix, use_cache=True, logits_to_keep=last(prefix), **{key: cache},
          **mix.kwargs())
    pick = [kinds.index(n) for n in names] if names else [0] * len(rows)
    cache.batch_select_indices(torch.tensor(pick, device=device))
    return skip


@contextlib.contextmanager
def _mixing(model: Any, adapter_names: list[str] | None
            ) -> Iterator[tuple[list[str] | None, RowAdapters]]:
    """Inference mode, and the rows' adapters set up when `adapter_names` (checked) are given."""
    import torch

    names = list(adapter_names) if adapter_names else None
    if names:
        check_names(model, names)
    with torch.inference_mode(), row_adapters(model) if names else \
            contextlib.nullcontext(RowAdapters(native=True)) as mix, _no_leaked_hooks(model):
        yield names, mix


@contextlib.contextmanager
def _no_leaked_hooks(model: Any) -> Iterator[None]:
    """Remove the forward pre-hooks a block left on the model's modules.

    PEFT's `adapter_names=` hooks are removed after a forward that returns, not after one that
    raises (peft 0.21 `_enable_peft_forward_hooks`): a later plain forward would still get the
    failed call's adapter names.
    """
    before = {id(m): set(m._forward_pre_hooks) for m in model.modules()}
    try:
        yield
    finally:
        for m in model.modules():
            for key in set(m._forward_pre_hooks) - before.get(id(m), set()):
                del m._forward_pre_hooks[key]
                m._forward_pre_hooks_with_kwargs.pop(key, None)


def greedy(model: Any, rows: list[list[int]], *, max_new_tokens: int, eos: set[int],
           pad_id: int, adapter_names: list[str] | None = None,
           share_prefix: bool = True) -> list[list[int]]:
    """New token ids for each prompt row (ending with the EOS token when one was emitted).

    rows: prompt token ids (no padding); adapter_names: PEFT's mixed batch, one name per row.
    """
    if not rows:
        return []
    with _mixing(model, adapter_names) as (names, mix):
        return _greedy(model, rows, max_new_tokens, eos, pad_id, names, share_prefix, mix)


def next_logits(model: Any, rows: list[list[int]], pad_id: int,
                adapter_names: list[str] | None = None, share_prefix: bool = True,
                then: list[int] | None = None) -> torch.Tensor:
    """Next-token logits (fp32, CPU) of each prompt row: `greedy`'s prompt pass (shared prefix
    run once where exact); adapter_names: one per row, as in `greedy`.

    then: one token per row, fed as `greedy`'s first decoding step through the KV cache; its
    logits follow the prompts' (2 x rows in all).
    """
    import torch

    with _mixing(model, adapter_names) as (names, mix):
        logits, cache, mask, pos = _prompt_pass(model, rows, pad_id, names, mix, share_prefix,
                                                1 if then else 0)
        out = [logits[:, -1]]
        if then:
            tokens = torch.tensor(then, device=logits.device)
            out.append(_step(model, cache_kwarg(model), cache, mask, pos, tokens, mix)[0][:, -1])
    return torch.cat(out).float().cpu()


def _prompt_pass(model: Any, rows: list[list[int]], pad_id: int, names: list[str] | None,
                 mix: RowAdapters, share_prefix: bool,
                 max_new_tokens: int) -> tuple[torch.Tensor, Any, torch.Tensor, torch.Tensor]:
    """The prompts through the model: (last logits, KV cache, attention mask, positions)."""
    import torch

    device = next(model.parameters()).device
    key = cache_kwarg(model)
    slots = max(len(r) for r in rows) + max_new_tokens
    cache = reserved_cache(model, slots)
    share_prefix = share_prefix and prefix_is_exact(cache, slots)
    skip = _shared_prefix(model, rows, names, key, cache, mix) if share_prefix else 0
    ids, tail_mask = left_pad([r[skip:] for r in rows], pad_id)
    ids, tail_mask = ids.to(device), tail_mask.to(device)
    mask = torch.cat([torch.ones((len(rows), skip), dtype=torch.long, device=device), tail_mask], 1)
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)[:, skip:]
    mix.names = names
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                   logits_to_keep=last(ids), **{key: cache}, **mix.kwargs()).logits
    filled = max((layer.get_seq_length() for layer in cache.layers
                  if hasattr(layer, "get_seq_length")), default=0)
    if filled < mask.shape[1]:  # a model without KV cache, or with one of its own
        raise RuntimeError(f"{type(model).__name__} left the KV cache it was given unfilled "
                           f"({filled} of {mask.shape[1]} positions)")
    return logits, cache, mask, pos


def _greedy(model: Any, rows: list[list[int]], max_new_tokens: int, eos: set[int], pad_id: int,
            names: list[str] | None, share_prefix: bool, mix: RowAdapters) -> list[list[int]]:
    key = cache_kwarg(model)
    with phase("prefill"):
        logits, cache, mask, pos = _prompt_pass(model, rows, pad_id, names, mix, share_prefix,
                                                max_new_tokens)
    with phase("decode"):
        return _decode(model, key, cache, logits, mask, pos, rows, max_new_tokens, eos, names,
                       mix)


def _decode(model: Any, key: str, cache: Any, logits: torch.Tensor, mask: torch.Tensor,
            pos: torch.Tensor, rows: list[list[int]], max_new_tokens: int, eos: set[int],
            names: list[str] | None, mix: RowAdapters) -> list[list[int]]:
    """Greedy steps after the prompt pass; finished rows leave the batch where the cache can."""
    import torch

    device = next(model.parameters()).device
    out: list[list[int]] = [[] for _ in rows]
    live = list(range(len(rows)))  # the batch's rows (indices into rows)
    done: set[int] = set()  # finished rows kept in a batch whose cache cannot drop rows
    can_drop = _can_drop_rows(cache)
    for step in range(max_new_tokens):
        nxt = logits[:, -1, :].argmax(-1)
        keep = []
        for j, tok in enumerate(nxt.tolist()):
            if live[j] in done:
                continue
            out[live[j]].append(tok)
            if tok in eos:
                done.add(live[j])
            else:
                keep.append(j)
        if not keep or step == max_new_tokens - 1:
            break
        if can_drop and len(keep) < len(live):  # finished rows leave: cache and names in step
            idx = torch.tensor(keep, device=device)
            cache.batch_select_indices(idx)
            mask, nxt, pos = mask[idx], nxt[idx], pos[idx]
            live = [live[j] for j in keep]
            names = [names[j] for j in keep] if names else None
        mix.names = names
        logits, mask, pos = _step(model, key, cache, mask, pos, nxt, mix)
    return out


def _step(model: Any, key: str, cache: Any, mask: torch.Tensor, pos: torch.Tensor,
          tokens: torch.Tensor, mix: RowAdapters) -> tuple[torch.Tensor, ...]:
    """One decoding step, a token per row through the KV cache: (logits, mask, positions)."""
    import torch

    mask = torch.cat([mask, mask.new_ones((len(tokens), 1))], 1)
    pos = pos[:, -1:] + 1
    logits = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=pos,
                   use_cache=True, logits_to_keep=1, **{key: cache}, **mix.kwargs()).logits
    return logits, mask, pos
