"""Map adapter tensor names onto modules of the base, built on the meta device (no weights).

Also the owner of PEFT's regex rules (target_modules, exclude_modules, rank/alpha_pattern),
evaluated as PEFT does, with Python's `re`, but in bounded time: a pattern from a downloaded
adapter_config.json such as `(.*.*)*zq` backtracks for hours on one module name.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftdiag.errors import FtdiagError
from ftdiag.safeio import read_json_object

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

    kind: str  # linear | conv1d | embedding | param (a parameter PEFT wraps: target_parameters)
    out_features: int
    in_features: int
    experts: int = 1  # a 3-D expert parameter: LoRA's rank axis holds r per expert
    key: str = ""  # param: the parameter's name, as PEFT matches rank/alpha_pattern against it


@dataclass
class BaseLayout:
    """The base's module tree from its config: names, kinds, shapes, vocab size."""

    model_dir: Path
    config: dict[str, Any]
    modules: dict[str, BaseModule] = field(default_factory=dict)
    # module -> its own 2-D/3-D parameters in registration order: (name, shape, is_transposed)
    params: dict[str, list[tuple[str, tuple[int, ...], bool]]] = field(default_factory=dict)

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
MAX_LAYERS = 1024  # a config claiming more would stall listing (or building) its modules


def base_layout(model_dir: Path, params: bool = False) -> BaseLayout:
    """The base's adaptable modules: computed for Llama-like configs, else built on meta
    (always when `params`: the parameters PEFT's target_parameters can wrap are listed too)."""
    raw = read_json_object(model_dir / "config.json")
    layers = raw.get("num_hidden_layers")
    if isinstance(layers, int) and not 0 <= layers <= MAX_LAYERS:
        raise FtdiagError(f"{model_dir / 'config.json'}: num_hidden_layers is {layers}, more "
                          f"than ftdiag maps (up to {MAX_LAYERS})")
    layout = BaseLayout(model_dir, raw)
    computed = None if params else llama_modules(raw)
    if computed is not None:
        layout.modules = computed
    else:
        layout.modules, layout.params = meta_modules(model_dir)
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


def meta_modules(model_dir: Path) -> tuple[dict[str, BaseModule],
                                           dict[str, list[tuple[str, tuple[int, ...], bool]]]]:
    """Build the base on the meta device (no memory, no weight files needed): its adaptable
    modules, and each module's own 2-D/3-D parameters (`BaseLayout.params`)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        cfg = AutoConfig.from_pretrained(str(model_dir))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(cfg)
    except Exception as exc:  # unknown model_type, broken config: many kinds
        raise FtdiagError(f"cannot build the base from {model_dir}/config.json: {exc}") from exc
    out: dict[str, BaseModule] = {}
    params: dict[str, list[tuple[str, tuple[int, ...], bool]]] = {}
    for name, mod in model.named_modules():
        info = _module_info(mod)
        if info is not None:
            out[name] = info
        own = [(p, tuple(t.shape), bool(getattr(mod, "is_transposed", False)))
               for p, t in mod.named_parameters(recurse=False) if t.ndim in (2, 3)]
        if own and name:
            params[name] = own
    return out, params


def param_wrappers(layout: BaseLayout, config: dict[str, Any]) -> dict[str, BaseModule]:
    """The LoRA layers PEFT's `target_parameters` puts on the base, by module name.

    As peft.tuners.tuners_utils._inject_parameters (0.17+): a parameter `module.p` is chosen when
    it equals an entry or ends with '.' + entry. Several chosen parameters of one module nest: the
    first registered is wrapped first, so it sits deepest (`module.base_layer.base_layer...`) and
    the last one is `module` itself. As lora.ParamWrapper sees a parameter: 3-D experts are
    (experts, out, in), or (experts, in, out) where the module says `is_transposed`.
    """
    targets = config.get("target_parameters") or []
    if not isinstance(targets, list) or not layout.params:
        return {}
    out: dict[str, BaseModule] = {}
    for module, own in layout.params.items():
        chosen = [(p, shape, flip) for p, shape, flip in own
                  if any(f"{module}.{p}" == t or f"{module}.{p}".endswith("." + str(t))
                         for t in targets)]
        for depth, (p, shape, flip) in enumerate(reversed(chosen)):
            experts, rows, cols = shape if len(shape) == 3 else (1, *shape)
            out_f, in_f = (cols, rows) if len(shape) == 3 and flip else (rows, cols)
            out[module + ".base_layer" * depth] = BaseModule("param", out_f, in_f, experts,
                                                             f"{module}.{p}")
    return out


def param_selectable(name: str, config: dict[str, Any]) -> bool:
    """Without the base: could `name` be a layer of `target_parameters` (a module holding one of
    the listed parameters, or a nested `.base_layer` of one)?"""
    targets = config.get("target_parameters") or []
    module = name.replace(".base_layer", "")
    for t in targets if isinstance(targets, list) else []:
        owner = str(t).rpartition(".")[0]
        if not owner or module == owner or module.endswith("." + owner):
            return True
    return False


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
    """Does module `name` match target_modules (PEFT's rules: regex string, suffix list)?

    `config` is checked by files.read_adapter_config (types) and patterns by `check_patterns`.
    """
    targets = config.get("target_modules")
    if not targets:
        return False
    exclude = config.get("exclude_modules")
    if exclude and (peft_match(exclude, name, "exclude_modules") if isinstance(exclude, str)
                    else any(name == e or name.endswith("." + e) for e in exclude)):
        return False
    if isinstance(targets, str):
        if targets == "all-linear":
            return not name.endswith("lm_head")
        ok = peft_match(targets, name, "target_modules")
    else:
        ok = any(name == t or name.endswith("." + t) for t in targets)
    layers = config.get("layers_to_transform")
    if ok and layers is not None:
        found = re.search(r"\.(\d+)\.", name)
        wanted = set(layers) if isinstance(layers, list) else {layers}
        ok = found is not None and int(found.group(1)) in wanted
    return ok


PATTERN_FIELDS = ("target_modules", "exclude_modules", "rank_pattern", "alpha_pattern")
PATTERN_BUDGET_S = 2.0  # Python's re on one pattern, over all module names together
MAX_PATTERN = 100_000  # characters
_CHILD = ("import json, re, sys; p, n, whole = json.load(sys.stdin); "
          "print(int((re.fullmatch if whole else re.match)(p, n) is not None))")


class _OutOfTime(Exception):
    """Raised by the SIGALRM handler in the middle of a regex match."""


@dataclass
class _Regex:
    """One pattern of adapter_config.json as PEFT applies it, and the match time it has used."""

    shown: str
    setting: str
    compiled: re.Pattern[str]
    whole: bool  # re.fullmatch (targets) or re.match (rank/alpha_pattern keys)
    spent: float = 0.0
    verdicts: dict[str, bool] = field(default_factory=dict)


def peft_match(pattern: str, name: str, setting: str) -> bool:
    r"""PEFT's regex test of `setting` on a module name, in bounded time.

    target_modules / exclude_modules: re.fullmatch (peft.utils.other.check_target_module_exists);
    rank_pattern / alpha_pattern keys: re.match of `(.*\.)?(key)$` (get_pattern_key). A pattern
    that needs more than PATTERN_BUDGET_S over all names is one error: PEFT would hang on it.
    """
    rx = _regex(pattern, setting)
    if name not in rx.verdicts:
        start = time.perf_counter()
        try:
            found = _bounded(rx, name, PATTERN_BUDGET_S - rx.spent)
        finally:
            rx.spent += time.perf_counter() - start
        if found is None:
            raise FtdiagError(f"{setting} {rx.shown} in adapter_config.json cannot be evaluated: "
                              f"Python's re, which PEFT uses, still backtracks after "
                              f"{PATTERN_BUDGET_S:g} s on {name!r}",
                              hint="PEFT would hang on this file too: write the pattern without "
                                   "nested repeats such as (.*.*)*, or list the module names")
        rx.verdicts[name] = found
    return rx.verdicts[name]


def check_patterns(config: dict[str, Any], names: list[str]) -> None:
    """Evaluate each regex of a (type-checked) adapter config on the adapter's module names
    once, so an invalid or runaway pattern is one error before any check relies on it."""
    for setting in PATTERN_FIELDS:
        value = config.get(setting)
        if isinstance(value, dict) and setting.endswith("_pattern"):
            patterns = list(value)
        elif isinstance(value, str) and value != "all-linear":
            patterns = [value]
        else:
            continue
        for pattern in patterns:
            for name in names:
                peft_match(pattern, name, setting)


@functools.lru_cache(maxsize=256)
def _regex(pattern: str, setting: str) -> _Regex:
    shown = repr(pattern) if len(pattern) <= 80 else f"{pattern[:80]!r}… ({len(pattern)} chars)"
    if len(pattern) > MAX_PATTERN:
        raise FtdiagError(f"{setting} {shown} in adapter_config.json is longer than "
                          f"{MAX_PATTERN:,} characters")
    whole = not setting.endswith("_pattern")
    try:
        with _time_bound(PATTERN_BUDGET_S):
            compiled = re.compile(pattern if whole else rf"(.*\.)?({pattern})$")
    except (re.error, RecursionError, OverflowError, ValueError, _OutOfTime) as exc:
        raise FtdiagError(f"{setting} {shown} in adapter_config.json is not a regular "
                          f"expression Python compiles ({str(exc) or 'too slow to compile'})",
                          hint="PEFT's re fails on it too") from None
    return _Regex(shown, setting, compiled, whole)


def _bounded(rx: _Regex, name: str, seconds: float) -> bool | None:
    """The match within `seconds` (None past it): a SIGALRM timer in the main thread, a
    child process elsewhere (a regex match cannot be interrupted from another thread)."""
    if seconds <= 0:
        return None
    if not _can_time():
        try:
            proc = subprocess.run([sys.executable, "-I", "-S", "-c", _CHILD], check=True,
                                  input=json.dumps([rx.compiled.pattern, name, rx.whole]),
                                  capture_output=True, text=True, timeout=seconds + 1.0)
        except subprocess.TimeoutExpired:  # (+1 s: the child's start-up)
            return None
        return proc.stdout.strip() == "1"
    try:
        with _time_bound(seconds):
            return (rx.compiled.fullmatch if rx.whole else rx.compiled.match)(name) is not None
    except _OutOfTime:
        return None


def _can_time() -> bool:
    return threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")


@contextmanager
def _time_bound(seconds: float) -> Iterator[None]:
    """Raise _OutOfTime in the main thread after `seconds` (elsewhere: no bound)."""
    if not _can_time():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, stop)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        if outer:  # someone else's timer was running: give it back what is left of it
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 1e-3))


def expected_modules(layout: BaseLayout, config: dict[str, Any]) -> list[str]:
    """Base modules (Linear/Conv1D/Embedding) that target_modules selects, then the layers that
    target_parameters puts on the base (`param_wrappers`)."""
    linear_only = config.get("target_modules") == "all-linear"
    chosen = [n for n, m in layout.modules.items()
              if target_matches(n, config) and (not linear_only or m.kind in ("linear", "conv1d"))]
    return chosen + [n for n in param_wrappers(layout, config) if n not in chosen]
