"""A run's hyperparameters (lr, epochs, LoRA r/alpha, batch) under one set of names.

Sources name them differently: transformers' `learning_rate`/`num_train_epochs`, LLaMA-Factory's
`lora_rank`, axolotl's `num_epochs`/`lora_r`/`micro_batch_size`, W&B's nested
`peft_config.default.r`, MLflow params as strings. `normalise` maps any of them to `KEYS`;
`dir_config` reads what a run folder holds (adapter_config.json, LLaMA-Factory's
training_args.yaml, the axolotl config embedded in its README.md), each through ftdiag.safeio:
a file that does not decode is one error naming it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ftdiag.safeio import parse_yaml, read_json, read_text

# canonical name -> names it goes by (leaf names of nested configs count too)
ALIASES: dict[str, tuple[str, ...]] = {
    "learning_rate": ("learning_rate", "lr"),
    "num_train_epochs": ("num_train_epochs", "num_epochs", "epochs"),
    "max_steps": ("max_steps",),
    "lora_r": ("lora_r", "lora_rank", "r"),
    "lora_alpha": ("lora_alpha", "alpha"),
    "batch_size": ("per_device_train_batch_size", "micro_batch_size", "batch_size"),
    "gradient_accumulation_steps": ("gradient_accumulation_steps",),
}
KEYS = tuple(ALIASES)
_SHORT = {"lr", "epochs", "r", "alpha", "batch_size"}
README_LIMIT = 1_000_000  # a model card past this is not parsed for an axolotl config


def normalise(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The KEYS found in `raw`: alias order first (`lora_alpha` beats `alpha`), then the
    shallowest; a short alias (r, alpha, lr, ...) counts nested only under a peft/lora key, so a
    model config's `rope_scaling.alpha` is not taken for LoRA's."""
    flat = _flatten(raw)
    out: dict[str, Any] = {}
    for key, names in ALIASES.items():
        hits = sorted((names.index(path.rsplit(".", 1)[-1]), path.count("."), path)
                      for path in flat if path.rsplit(".", 1)[-1] in names
                      and (path.rsplit(".", 1)[-1] not in _SHORT or "." not in path
                           or any(w in path.lower() for w in ("peft", "lora"))))
        for *_, path in hits:
            value = _number(flat[path])
            if value is not None and not (key == "max_steps" and value <= 0):
                out[key] = value
                break
    return out


def dir_config(run_dir: Path) -> tuple[dict[str, Any], str | None]:
    """Hyperparameters a run folder records, and the framework that wrote it (or None)."""
    config: dict[str, Any] = {}
    framework = None
    adapter = run_dir / "adapter_config.json"
    if adapter.is_file():
        cfg = read_json(adapter)
        if isinstance(cfg, dict):
            config.update(normalise({k: cfg.get(k) for k in ("r", "lora_alpha")}))
    if (run_dir / "trainer_log.jsonl").is_file() or (run_dir / "training_args.yaml").is_file():
        framework = "LLaMA-Factory"
        args = run_dir / "training_args.yaml"
        if args.is_file():
            config.update(_yaml_config(read_text(args), args))
    readme = run_dir / "README.md"
    if readme.is_file() and readme.stat().st_size < README_LIMIT:
        text = readme.read_text(encoding="utf-8", errors="replace")
        if "axolotl" in text.lower():
            framework = "axolotl"
            block = _axolotl_yaml(text)
            if block is not None:
                config.update(_yaml_config(block, readme))
    return config, framework


def _axolotl_yaml(text: str) -> str | None:
    """The ```yaml block after "See axolotl config" in a model card (str.find: linear)."""
    start = text.find("See axolotl config")
    start = text.find("```yaml\n", start) if start >= 0 else -1
    end = text.find("```", start + 8) if start >= 0 else -1
    return text[start + 8:end] if end >= 0 else None


def _yaml_config(text: str, source: Path) -> dict[str, Any]:
    data = parse_yaml(text, source)
    return normalise(data) if isinstance(data, dict) else {}


def _flatten(raw: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def _number(value: Any) -> int | float | None:
    """An int or float from a number or numeric string (MLflow params are strings)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    return int(f) if f.is_integer() and abs(f) >= 1 else f
