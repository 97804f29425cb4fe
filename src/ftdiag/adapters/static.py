"""Layer S of check-adapter: A001-A015 from the adapter files and the base's config/tensors."""

from __future__ import annotations

import logging
import statistics
from pathlib import Path

from ftdiag.adapters.base_checks import base_checks
from ftdiag.adapters.consistency import config_weights_check, provenance_checks
from ftdiag.adapters.details import AdapterConfigInfo, AdapterStats, CheckDetails, LayerTotals
from ftdiag.adapters.files import AdapterFiles, read_adapter
from ftdiag.adapters.keys import AdapterModule, group_lora_keys
from ftdiag.adapters.stats import LayerStat, compute_stats
from ftdiag.findings import Finding, Report, finding, passed

log = logging.getLogger(__name__)

TINY_DELTA = 1e-4
MOST = 0.5  # A005 fires when at least this share of trained layers is below the threshold
BASE_CODES = ("A005", "A006", "A007", "A008", "A009")


def run_static(adapter_dir: str | Path, base_dir: Path | None = None, *,
               threshold: float = TINY_DELTA) -> Report:
    """Layer S: read the adapter lazily, compare it with the base layout, return A0xx findings."""
    files = read_adapter(adapter_dir)
    report = Report("check-adapter", layers_run=["S"])
    info = AdapterStats(str(files.path))
    report.details = CheckDetails(static=info)
    if not _files_present(files, report):
        return report
    assert files.config is not None and files.weights is not None
    cfg = files.config
    info.config = AdapterConfigInfo(
        weights_file=files.weights.name, n_tensors=len(files.shapes),
        peft_type=cfg.get("peft_type", "LORA"), r=cfg.get("r"), lora_alpha=cfg.get("lora_alpha"),
        use_rslora=bool(cfg.get("use_rslora")), use_dora=bool(cfg.get("use_dora")),
        target_modules=cfg.get("target_modules"),
        base_model_name_or_path=cfg.get("base_model_name_or_path"),
        dtypes=sorted(set(files.dtypes.values())))
    modules, other = group_lora_keys(list(files.shapes))
    if not _not_empty(files, modules, report):
        return report
    stats, nonfinite = compute_stats(files, modules, cfg)
    info.adapted_modules = len(modules)
    info.extra_tensors = other
    report.add(_nonfinite(nonfinite))
    report.add(*_zero_b(stats))
    report.add(config_weights_check(files, modules, check_targets=base_dir is None))
    report.add(*provenance_checks(files, modules, other, base_dir))
    if base_dir is None:
        for code in BASE_CODES:
            report.add(_skip(code, "no base model given"))
    else:
        report.add(*base_checks(files, modules, other, stats, Path(base_dir), info,
                                threshold=threshold, most=MOST))
    info.layers = stats
    info.totals = _totals(stats)
    return report


def _files_present(files: AdapterFiles, report: Report) -> bool:
    """A001: both adapter_config.json and a weights file must be there."""
    missing = [n for n, ok in (("adapter_config.json", files.config is not None),
                               ("adapter_model.safetensors/.bin", files.weights is not None))
               if not ok]
    if missing:
        present = sorted(p.name for p in files.path.iterdir())[:10]
        report.add(finding("A001", f"missing in {files.path}: {', '.join(missing)}",
                           hint="save with model.save_pretrained(dir) on the PeftModel "
                                "(trainer.save_model does this for PEFT models)",
                           missing=missing, present=present))
        report.layers_skipped["R"] = "adapter files missing"
        return False
    name = files.weights.name if files.weights else "weights"
    report.add(passed("A001", f"adapter_config.json and {name} present"))
    return True


def _not_empty(files: AdapterFiles, modules: dict[str, AdapterModule], report: Report) -> bool:
    """A002: tensors present, none with zero elements, at least one LoRA pair."""
    empty = [k for k, s in files.shapes.items() if 0 in s]
    if not files.shapes or not modules or empty:
        what = ("no tensors" if not files.shapes else
                f"{len(empty)} tensors with 0 elements (e.g. {empty[0]})" if empty else
                "no lora_A/lora_B tensors")
        report.add(finding("A002", f"{files.weights.name if files.weights else 'weights'}: {what}",
                           hint="with DeepSpeed ZeRO-3 gather the weights before saving; "
                                "re-save with PeftModel.save_pretrained",
                           n_tensors=len(files.shapes), zero_element=empty[:10]))
        report.layers_skipped["R"] = "adapter weights empty"
        return False
    report.add(passed("A002", f"{len(files.shapes)} tensors, {len(modules)} adapted modules"))
    return True


def _nonfinite(keys: list[str]) -> Finding:
    """A004: NaN/Inf anywhere in the file."""
    if keys:
        return finding("A004", f"NaN/Inf in {len(keys)} tensors (e.g. {keys[0]})",
                       hint="training diverged (lower the lr, use bf16 not fp16, clip grads)",
                       tensors=keys[:20], count=len(keys))
    return passed("A004", "all tensors finite")


def _zero_b(stats: list[LayerStat]) -> list[Finding]:
    """A003 (every lora_B zero) and A010 (some zero, some not)."""
    zero = [s.module for s in stats if s.b_zero]
    if stats and len(zero) == len(stats):
        return [finding("A003", f"all {len(stats)} lora_B tensors are exactly zero: "
                                "the adapter is a no-op",
                        hint="saved before training, or the optimizer never updated it "
                             "(lr=0, frozen params, no trainable labels)", layers=len(stats)),
                _skip("A010", "every layer is zero (A003)")]
    out = [passed("A003", f"{len(stats) - len(zero)}/{len(stats)} lora_B tensors non-zero")]
    if zero:
        out.append(finding("A010", f"{len(zero)}/{len(stats)} adapted layers have lora_B all "
                                   f"zero (e.g. {zero[0]})",
                           hint="gradients never reached them: check gradient checkpointing "
                                "(enable_input_require_grads) and layers_to_transform",
                           zero_layers=zero[:50], count=len(zero), total=len(stats)))
    else:
        out.append(passed("A010", "every adapted layer was updated"))
    return out


def _skip(code: str, why: str) -> Finding:
    return Finding(code, "skip", f"skipped: {why}")


def _totals(stats: list[LayerStat]) -> LayerTotals:
    rels = [s.rel for s in stats if s.rel is not None and s.finite]
    totals = LayerTotals(len(stats), sum(s.b_zero for s in stats),
                         sum(s.delta_norm for s in stats if s.finite),
                         sorted({s.rank for s in stats}), sorted({s.scaling for s in stats}))
    if rels:
        totals.rel_min, totals.rel_median = min(rels), statistics.median(rels)
        totals.rel_max = max(rels)
    return totals
