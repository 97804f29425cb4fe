"""A005-A009: the adapter against its base (module tree on meta, ‖W‖ from base safetensors)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ftdiag.adapters.details import AdapterStats, BaseFit
from ftdiag.adapters.files import AdapterFiles
from ftdiag.adapters.identity import base_identity
from ftdiag.adapters.keys import (
    FULL_MODULES,
    AdapterModule,
    BaseLayout,
    base_layout,
    expected_modules,
    param_wrappers,
    unmatched_hint,
)
from ftdiag.adapters.stats import (
    LayerStat,
    add_ratios,
    base_norms,
    base_weight_index,
    pattern_value,
)
from ftdiag.findings import Finding, finding, passed

log = logging.getLogger(__name__)


def base_checks(files: AdapterFiles, modules: dict[str, AdapterModule], other: list[str],
                stats: list[LayerStat], base_dir: Path, info: AdapterStats, *,
                threshold: float, most: float) -> list[Finding]:
    """Run A006, A007, A008, A009 and A005 against the base in `base_dir`."""
    assert files.config is not None
    cfg = files.config
    layout = base_layout(base_dir, params=bool(cfg.get("target_parameters")))
    layout.modules = {**layout.modules, **param_wrappers(layout, cfg)}
    matched = [n for n in modules if n in layout.modules]
    expected = expected_modules(layout, cfg)
    info.base = BaseFit(str(base_dir), layout.config.get("model_type"), len(expected),
                        len(matched), layout.vocab_size)
    out = [_keys(modules, matched, layout), _targets(modules, matched, expected, cfg)]
    out += _shapes(files, modules, matched, layout)
    out.append(base_identity(cfg, base_dir, files.path))
    out.append(_vocab(files, modules, other, layout))
    out.append(_tiny_delta(stats, layout, info, threshold, most))
    return out


def _keys(modules: dict[str, AdapterModule], matched: list[str], layout: BaseLayout) -> Finding:
    """A006: every adapted module name must exist in the base."""
    unmatched = [n for n in modules if n not in layout.modules]
    if unmatched:
        return finding("A006", f"{len(unmatched)}/{len(modules)} adapted modules are not in the "
                               f"base (e.g. {unmatched[0]})",
                       hint=unmatched_hint(unmatched, layout) + "; PEFT would leave them at init",
                       unmatched=unmatched[:20], count=len(unmatched), total=len(modules))
    return passed("A006", f"all {len(modules)} adapted modules exist in the base")


def _targets(modules: dict[str, AdapterModule], matched: list[str], expected: list[str],
             cfg: dict[str, Any]) -> Finding:
    """A007: target_modules must select the modules the adapter holds."""
    targets = cfg.get("target_modules")
    if not expected:
        return finding("A007", f"target_modules {targets!r} match no module of the base",
                       hint="PEFT would inject nothing; fix target_modules in "
                            "adapter_config.json (module names of this base)",
                       target_modules=targets, expected=0, adapter_modules=len(modules))
    chosen = set(expected)
    outside = [n for n in matched if n not in chosen]
    if outside:
        return finding("A007", f"{len(outside)} adapted modules are not selected by "
                               f"target_modules {targets!r} (e.g. {outside[0]})",
                       hint="their weights would be ignored on load; fix target_modules",
                       not_targeted=outside[:20], expected=len(expected),
                       adapter_modules=len(modules))
    return passed("A007", f"target_modules select {len(expected)} base modules; "
                          f"adapter holds {len(modules)}",
                  expected=len(expected), adapter_modules=len(modules))


def _shapes(files: AdapterFiles, modules: dict[str, AdapterModule], matched: list[str],
            layout: BaseLayout) -> list[Finding]:
    """A008 (fail): lora_A [r, in] and lora_B [out, r] must fit the base module."""
    if not matched:
        return [Finding("A008", "skip", "skipped: no adapted module is in the base (A006)")]
    bad: list[str] = []
    for name in matched:
        base = layout.modules[name]
        if base.kind == "embedding":
            continue  # checked by A009
        a = files.shapes.get(modules[name].keys.get("lora_A", ""))
        b = files.shapes.get(modules[name].keys.get("lora_B", ""))
        if (a and a[-1] != base.in_features) or (b and b[0] != base.out_features):
            bad.append(f"{name}: A{list(a or ())} B{list(b or ())} vs base "
                       f"out={base.out_features} in={base.in_features}")
        elif a and base.kind == "param":  # r per expert, r from rank_pattern on the parameter
            cfg = files.config or {}
            want = pattern_value(cfg.get("rank_pattern") or {}, base.key, cfg.get("r"))
            if isinstance(want, int) and a[0] != want * base.experts:
                bad.append(f"{name}: A{list(a)} holds rank {a[0]}, not r={want} x "
                           f"{base.experts} experts of {base.key}")
    if bad:
        return [finding("A008", f"{len(bad)} LoRA tensors do not fit the base shapes "
                                f"({bad[0]})",
                        hint="the adapter was trained on a different base model; pass the "
                             "right --base", mismatched=bad[:20], count=len(bad))]
    return [passed("A008", f"shapes of {len(matched)} matched modules fit the base")]


def tokenizer_size(folder: Path) -> int | None:
    """Number of token ids in tokenizer.json (vocab + added tokens), None when absent."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    vocab = data.get("model", {}).get("vocab") or {}
    ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab)))
    ids += [t.get("id", 0) for t in data.get("added_tokens") or []]
    return max(ids) + 1 if ids else None


def _vocab(files: AdapterFiles, modules: dict[str, AdapterModule], other: list[str],
           layout: BaseLayout) -> Finding:
    """A009: saved embedding/lm_head rows or the adapter's tokenizer vs the base vocab size."""
    vocab = layout.vocab_size
    if vocab is None:
        return Finding("A009", "skip", "skipped: base config has no vocab_size")
    bad: list[str] = []
    for key in other:
        if any(f".{m}." in f".{key}" for m in FULL_MODULES) and key.endswith("weight"):
            rows = files.shapes[key][0]
            if rows != vocab:
                bad.append(f"{key} has {rows} rows")
    for name, mod in modules.items():
        a = files.shapes.get(mod.keys.get("lora_embedding_A", ""))
        if a and a[-1] != vocab:
            bad.append(f"{name}.lora_embedding_A covers {a[-1]} tokens")
    tok = tokenizer_size(files.path)
    if tok is not None and tok > vocab:
        bad.append(f"the adapter's tokenizer has {tok} tokens")
    if bad:
        return finding("A009", f"base vocab is {vocab} but {bad[0]}",
                       hint="resize the base embeddings (resize_token_embeddings) and save "
                            "embed_tokens/lm_head with the adapter (save_embedding_layers)",
                       base_vocab=vocab, mismatches=bad, tokenizer_size=tok)
    return passed("A009", f"vocab {vocab} consistent"
                          + (f" (adapter tokenizer {tok})" if tok else ""), base_vocab=vocab)


def _tiny_delta(stats: list[LayerStat], layout: BaseLayout, info: AdapterStats,
                threshold: float, most: float) -> Finding:
    """A005: relative update ‖ΔW‖/‖W‖ below `threshold` on most trained layers."""
    trained = [s for s in stats if not s.b_zero and s.finite]
    if not trained:
        return Finding("A005", "skip", "skipped: no trained finite layers")
    if not base_weight_index(layout.model_dir):
        assert info.base is not None  # base_checks() set it
        info.base.ratio_skipped = "base has no safetensors weights"
        total = sum(s.delta_norm for s in trained)
        return Finding("A005", "skip", f"skipped: base has no safetensors weights (ratio not "
                                       f"computed); absolute Σ‖ΔW‖ = {total:.3g}")
    add_ratios(stats, base_norms(layout, [s.module for s in trained]))
    rated = [s for s in trained if s.rel is not None]
    if not rated:
        return Finding("A005", "skip", "skipped: no base weights found for adapted modules")
    small = [s for s in rated if s.rel is not None and s.rel < threshold]
    med = sorted(s.rel for s in rated if s.rel is not None)[len(rated) // 2]
    if len(small) >= most * len(rated):
        return finding("A005", f"{len(small)}/{len(rated)} layers move ‖ΔW‖/‖W‖ < "
                               f"{threshold:g} (median {med:.2e})",
                       hint="train longer or with a higher lr / lora_alpha",
                       below=len(small), total=len(rated), median_rel=med, threshold=threshold)
    return passed("A005", f"median ‖ΔW‖/‖W‖ = {med:.2e} ({len(small)}/{len(rated)} below "
                          f"{threshold:g})", median_rel=med)
