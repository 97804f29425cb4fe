"""X004: a LoRA GGUF checked against the PEFT adapter it was converted from.

The layout is the one llama.cpp's convert_lora_to_gguf.py writes and gguf-py 0.19 names
(`Keys.Adapter`): general.type = "adapter", adapter.type = "lora", adapter.lora.alpha (float),
general.architecture, and per adapted weight `<llama.cpp name>.weight.lora_a` [r, in] and
`.lora_b` [out, r] (numpy order), lora_b rows of Llama q/k permuted like the base weights.
llama.cpp scales each pair by alpha / r (r read from lora_a).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ftdiag.export.lora import LoraAdapter, LoraUpdate
from ftdiag.export.weights import gguf_fields, permute
from ftdiag.findings import Finding, finding, passed

VALUE_TOL = 2e-2  # relative error of A/B tolerated (fp16/bf16 conversions)
HF_TO_GGUF_ARCH = {"mistral": "llama", "mixtral": "llama", "smollm3": "smollm3"}


@dataclass
class GgufLoraCheck:
    """What the LoRA GGUF holds and where it disagrees with the PEFT adapter."""

    path: str
    general_type: str
    adapter_type: str
    architecture: str
    alpha: float | None
    pairs: int
    expected_pairs: int
    expected_arch: str | None = None
    problems: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # PEFT modules without a pair
    extra: list[str] = field(default_factory=list)  # GGUF pairs without a PEFT module
    rank_mismatch: list[str] = field(default_factory=list)
    scale_mismatch: list[str] = field(default_factory=list)
    scales: list[tuple[int, float]] = field(default_factory=list)  # (r, PEFT's scaling) per pair
    value_mismatch: list[str] = field(default_factory=list)


def read_pairs(reader: Any) -> dict[str, dict[str, np.ndarray]]:
    """{base tensor name: {"a": lora_a, "b": lora_b}} as float32 in numpy (row-major) order."""
    import gguf

    pairs: dict[str, dict[str, np.ndarray]] = {}
    for t in reader.tensors:
        m = re.match(r"^(?P<base>.+)\.lora_(?P<part>[ab])$", t.name)
        if not m:
            continue
        qtype = gguf.GGMLQuantizationType(t.tensor_type)
        values = np.asarray(gguf.quants.dequantize(t.data, qtype), dtype=np.float32)
        shape = tuple(int(n) for n in reversed(t.shape))
        pairs.setdefault(m.group("base"), {})[m.group("part")] = values.reshape(shape)
    return pairs


def base_config(base_dir: Path | None) -> dict[str, Any]:
    if base_dir is None:
        return {}
    try:
        cfg = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def name_map(arch: str, modules: list[str], cfg: dict[str, Any]) -> dict[str, str]:
    """PEFT module name -> llama.cpp tensor name (blk.N.attn_q.weight) for `arch`."""
    import gguf

    arch_enum = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}.get(arch)
    if arch_enum is None:
        return {}
    layers = [int(m.group(1)) for n in modules if (m := re.search(r"\.(\d+)\.", n))]
    blocks = int(cfg.get("num_hidden_layers") or (max(layers) + 1 if layers else 1))
    names = gguf.TensorNameMap(arch_enum, blocks)
    out = {}
    for module in modules:
        name = names.get_name(module)
        if name is not None:
            out[module] = f"{name}.weight"
    return out


def rel(x: np.ndarray, ref: np.ndarray) -> float:
    denom = float(np.linalg.norm(ref))
    return float(np.linalg.norm(x - ref)) / denom if denom > 0 else float(np.linalg.norm(x))


def compare_pair(upd: LoraUpdate, pair: dict[str, np.ndarray], alpha: float | None,
                 heads: int | None, check: GgufLoraCheck) -> None:
    """Rank, llama.cpp's alpha/r scaling and the A/B values of one module."""
    a, b = pair.get("a"), pair.get("b")
    if a is None or b is None or a.ndim != 2 or b.ndim != 2:
        check.missing.append(upd.module)
        return
    rank = int(a.shape[0])
    if rank != upd.rank:
        check.rank_mismatch.append(f"{upd.module}: r {rank} vs {upd.rank}")
        return
    scale = alpha / rank if alpha else 1.0  # llama.cpp uses scale 1 when alpha is 0
    check.scales.append((rank, upd.scaling))
    if abs(scale - upd.scaling) > 1e-3 * max(abs(upd.scaling), 1e-12):
        check.scale_mismatch.append(f"{upd.module}: {scale:g} vs {upd.scaling:g}")
    if upd.transposed:
        return  # embeddings / fan_in_fan_out: the converter transposes; rank checked above
    ref_b = permute(upd.b, heads) if heads else upd.b
    if a.shape != upd.a.shape or b.shape != ref_b.shape:
        check.value_mismatch.append(f"{upd.module}: shapes {a.shape}/{b.shape}")
    elif max(rel(a, upd.a), rel(b, ref_b)) > VALUE_TOL:
        check.value_mismatch.append(
            f"{upd.module}: rel. error A {rel(a, upd.a):.3f}, B {rel(b, ref_b):.3f}")


def q_k_heads(module: str, arch: str, cfg: dict[str, Any]) -> int | None:
    """Heads used by llama.cpp's q/k permutation for this module (None: not permuted)."""
    if arch not in ("llama", "mistral", "granite") or not module.endswith(("q_proj", "k_proj")):
        return None
    heads = int(cfg.get("num_attention_heads") or 0)
    kv = int(cfg.get("num_key_value_heads") or heads)
    return (heads if module.endswith("q_proj") else kv) or None


def check_gguf_lora(path: Path, reader: Any, adapter: LoraAdapter,
                    base_dir: Path | None) -> tuple[GgufLoraCheck, list[Finding]]:
    """X004 from the GGUF's metadata and LoRA pairs versus the PEFT adapter."""
    fields = gguf_fields(reader)
    raw_alpha = fields.get("adapter.lora.alpha")
    check = GgufLoraCheck(
        str(path), str(fields.get("general.type", "")), str(fields.get("adapter.type", "")),
        str(fields.get("general.architecture", "")),
        float(raw_alpha) if raw_alpha is not None else None, 0, len(adapter.updates))
    if check.general_type != "adapter" or check.adapter_type != "lora":
        check.problems.append(f"not a LoRA adapter: general.type={check.general_type or '–'}, "
                              f"adapter.type={check.adapter_type or '–'}")
        return check, [_finding(check)]
    cfg = base_config(base_dir)
    if cfg.get("model_type"):
        check.expected_arch = HF_TO_GGUF_ARCH.get(cfg["model_type"], cfg["model_type"])
        if check.architecture != check.expected_arch:
            check.problems.append(f"architecture {check.architecture!r}, base is "
                                  f"{check.expected_arch!r}")
    pairs = read_pairs(reader)
    check.pairs = len(pairs)
    if check.alpha is None:
        check.problems.append("no adapter.lora.alpha (llama.cpp then scales by 1)")
    names = name_map(check.architecture, list(adapter.updates), cfg)
    for module, upd in adapter.updates.items():
        gname = names.get(module)
        if gname is None or gname not in pairs:
            check.missing.append(module)
            continue
        compare_pair(upd, pairs[gname], check.alpha, q_k_heads(module, check.architecture, cfg),
                     check)
    check.extra = sorted(set(pairs) - set(names.values()))
    return check, [_finding(check)]


def _finding(c: GgufLoraCheck) -> Finding:
    parts = list(c.problems)
    if c.scale_mismatch:
        want = sorted({s.split(": ")[1].split(" vs ")[1] for s in c.scale_mismatch})
        alpha = "absent" if c.alpha is None else f"{c.alpha:g}"  # absent: llama.cpp scales by 1
        parts.append(f"adapter.lora.alpha {alpha} gives alpha/r "
                     f"{c.scale_mismatch[0].split(': ')[1].split(' vs ')[0]} in "
                     f"{len(c.scale_mismatch)} modules, the adapter scales by {', '.join(want)}")
    for label, items in (("modules without lora_a/lora_b", c.missing),
                         ("pairs the adapter does not have", c.extra),
                         ("rank differs", c.rank_mismatch),
                         ("values differ from the adapter", c.value_mismatch)):
        if items:
            parts.append(f"{len(items)} {label} (e.g. {items[0]})")
    if parts:
        if c.missing or c.extra:
            parts.append(f"{2 * c.pairs} tensors, the adapter has {2 * c.expected_pairs}")
        return finding("X004", "; ".join(parts), hint=_hint(c),
                       problems=c.problems, missing=c.missing[:50], extra=c.extra[:50],
                       rank_mismatch=c.rank_mismatch[:50], scale_mismatch=c.scale_mismatch[:50],
                       value_mismatch=c.value_mismatch[:50])
    f = passed("X004", f"{c.pairs} lora_a/lora_b pairs, alpha {c.alpha:g}, arch "
                       f"{c.architecture} match the adapter")
    f.check = "LoRA GGUF matches adapter"
    return f


def _hint(c: GgufLoraCheck) -> str:
    """The fix that can work: for a scale that llama.cpp's one α/r cannot carry, the exact numbers.

    llama.cpp scales every pair of a file by adapter.lora.alpha / r times the --lora-scaled
    factor (src/llama-adapter.h get_scale, llama.cpp 0c1e57098); PEFT by α/r, α/√r (rsLoRA) or
    a per-module alpha_pattern / rank_pattern.
    """
    convert = ("convert again with llama.cpp's convert_lora_to_gguf.py from this adapter folder "
               "and the --base it was trained on")
    if not c.scale_mismatch or c.missing or c.extra or c.rank_mismatch or c.value_mismatch:
        return convert
    alpha = c.alpha or 0.0
    wanted = {round(scaling * r, 6) for r, scaling in c.scales}  # the α each pair needs
    served = {round(scaling / ((alpha / r) if alpha else 1.0), 6) for r, scaling in c.scales}
    if len(wanted) == 1:
        want = wanted.pop()
        factor = served.pop() if len(served) == 1 else None
        run = (f", or serve it as llama-server --lora-scaled {c.path} {factor:.6g}"
               if factor is not None else "")
        return (f"llama.cpp scales by adapter.lora.alpha / r: write alpha {want:g} "
                f"(gguf-set-metadata {c.path} adapter.lora.alpha {want:g}){run}; "
                "converting again writes the same alpha")
    if len(served) == 1:
        factor = served.pop()
        return (f"serve it as llama-server --lora-scaled {c.path} {factor:.6g} (llama.cpp "
                "scales by adapter.lora.alpha / r); converting again writes the same alpha")
    return ("llama.cpp applies one alpha / r to every pair of a file, and this adapter's "
            f"modules need {len(wanted)} different ones (alpha_pattern / rank_pattern): no alpha "
            "or --lora-scaled reproduces it; merge the adapter into the base (ftdiag merge) and "
            "convert the merged model instead")
