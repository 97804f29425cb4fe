"""A011: adapter_config.json against the tensors it ships (rank, targets, DoRA, recorded α/r)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftdiag.adapters.files import AdapterFiles
from ftdiag.adapters.keys import AdapterModule, param_selectable, target_matches
from ftdiag.adapters.stats import pattern_value
from ftdiag.findings import Finding, finding, passed
from ftdiag.runmeta import read_meta

HINT = ("PEFT refuses or mis-scales such an adapter: re-save it with "
        "PeftModel.save_pretrained, or fix adapter_config.json to match the weights")


def config_weights_check(files: AdapterFiles, modules: dict[str, AdapterModule], *,
                         check_targets: bool = True) -> Finding:
    """A011: rank (r / rank_pattern), DoRA, recorded r/α and targets must agree with the tensors.

    `check_targets` is off when a base is given: A007 then owns targets vs modules.
    """
    assert files.config is not None
    cfg = files.config
    problems = _ranks(files, modules, cfg)
    problems += _dora(modules, cfg)
    problems += _recorded(files.path, cfg)
    if check_targets and cfg.get("target_modules"):
        outside = [n for n in modules if not target_matches(n, cfg)
                   and not param_selectable(n, cfg)]
        if outside:
            problems.append(f"{len(outside)} adapted modules are not selected by target_modules "
                            f"{cfg.get('target_modules')!r} (e.g. {outside[0]})")
    if problems:
        return finding("A011", f"adapter_config.json disagrees with the weights: {problems[0]}"
                       + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""),
                       hint=HINT, problems=problems[:20], count=len(problems))
    return passed("A011", f"config agrees with the weights of {len(modules)} modules "
                          f"(r={cfg.get('r')}, lora_alpha={cfg.get('lora_alpha')})")


def provenance_checks(files: AdapterFiles, modules: dict[str, AdapterModule], other: list[str],
                      base_dir: Path | None) -> list[Finding]:
    """A012 stale checkpoint, A013 tied-embedding update, A014 quantized training base,
    A015 unchanged by training."""
    from ftdiag.adapters.checkpoints import stale_checkpoint, unchanged_adapter
    from ftdiag.adapters.embeddings import tied_embedding_update
    from ftdiag.adapters.quantized import quantized_training_base

    assert files.config is not None
    base = Path(base_dir) if base_dir is not None else None
    return [stale_checkpoint(files.path), tied_embedding_update(files, modules, other, base),
            quantized_training_base(files.config, base), unchanged_adapter(files.path)]


def try_load_adapter(loaded: Any, adapter_dir: str | Path) -> tuple[Any, Finding | None]:
    """The PeftModel on `loaded` base, or (None, A011 with PEFT's reason) when PEFT refuses it."""
    from ftdiag.errors import FtdiagError
    from ftdiag.model.load import load_adapter

    try:
        return load_adapter(loaded, adapter_dir), None
    except FtdiagError as exc:
        return None, loader_failure(loader_reason(exc))


def loader_reason(exc: BaseException) -> str:
    """The loader's own message on one line (PEFT's size-mismatch lists span many)."""
    return " ".join(str(exc.__cause__ or getattr(exc, "message", exc)).split())


def loader_failure(reason: str) -> Finding:
    """A011 (fail): PEFT/transformers refused to load the adapter onto the base."""
    return finding("A011", f"PEFT cannot load the adapter onto the base: {reason[:400]}",
                   hint=HINT, loader_error=reason[:2000])


def _ranks(files: AdapterFiles, modules: dict[str, AdapterModule],
           cfg: dict[str, Any]) -> list[str]:
    """Each LoRA pair: A [r, in], B [out, r]; r as config's r / rank_pattern says."""
    out: list[str] = []
    for name, mod in modules.items():
        a_key = mod.keys.get("lora_A") or mod.keys.get("lora_embedding_A")
        b_key = mod.keys.get("lora_B") or mod.keys.get("lora_embedding_B")
        if not a_key or not b_key:
            half = "lora_B" if a_key else "lora_A"
            out.append(f"{name} has no {half} tensor")
            continue
        a, b = files.shapes[a_key], files.shapes[b_key]
        if len(a) < 2 or len(b) < 2:
            continue  # A002/stats report malformed tensors
        want = pattern_value(cfg.get("rank_pattern") or {}, name, cfg.get("r"))
        if a[0] != b[-1]:
            out.append(f"{name}: lora_A has rank {a[0]} but lora_B has rank {b[-1]}")
        elif _wrapped_param(name, cfg):
            ranks = [cfg.get("r"), *(cfg.get("rank_pattern") or {}).values()]
            if not any(isinstance(r, int) and r > 0 and a[0] % r == 0 for r in ranks):
                out.append(f"{name}: rank {a[0]} in the weights is no multiple of a rank in "
                           f"the config (r={cfg.get('r')}, rank_pattern)")
        elif want is not None and int(want) != a[0]:
            src = "rank_pattern" if want != cfg.get("r") else "r"
            out.append(f"{name}: rank {a[0]} in the weights, {src}={want} in the config")
    return out


def _dora(modules: dict[str, AdapterModule], cfg: dict[str, Any]) -> list[str]:
    """use_dora must match the presence of lora_magnitude_vector tensors."""
    with_mag = [n for n, m in modules.items() if "lora_magnitude_vector" in m.keys]
    lora = [n for n, m in modules.items() if "lora_A" in m.keys]
    if cfg.get("use_dora") and lora and not with_mag:
        return ["use_dora is true but the weights hold no lora_magnitude_vector"]
    if not cfg.get("use_dora") and with_mag:
        return [f"{len(with_mag)} modules hold lora_magnitude_vector (DoRA) but use_dora is "
                "false"]
    return []


def _recorded(adapter_dir: Path, cfg: dict[str, Any]) -> list[str]:
    """r / lora_alpha recorded at training (ftdiag_meta.json) vs the config: scaling α/r."""
    hp: dict[str, Any] = {}
    for folder in (adapter_dir, adapter_dir.parent):
        hp = read_meta(folder).get("hyperparameters") or {}
        if hp:
            break
    out = []
    for meta_key, cfg_key in (("lora_r", "r"), ("lora_alpha", "lora_alpha")):
        trained, now = hp.get(meta_key), cfg.get(cfg_key)
        if trained is not None and now is not None and float(trained) != float(now):
            out.append(f"{cfg_key}={now} in the config but {trained} at training "
                       f"(ftdiag_meta.json): the scaling α/r differs from the trained one")
    return out


def _wrapped_param(name: str, cfg: dict[str, Any]) -> bool:
    """A layer of target_parameters (lora.ParamWrapper), checked here without the base: its rank
    axis holds r per expert (r x experts), and rank_pattern applies to its parameter's name, so
    only a multiple of a configured rank is required; A008 checks it exactly against the base."""
    return param_selectable(name, cfg) and (cfg.get("target_modules") == "all-linear"
                                            or not target_matches(name, cfg))
