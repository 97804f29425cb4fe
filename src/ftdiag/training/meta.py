"""What a run records in ftdiag_meta.json, built alike by `ftdiag train` and FtdiagCallback.

Base (name, local folder, config hash, weights fingerprint), template and a sample of what the
model was fed, tokenizer pad/eos, hyperparameters from TrainingArguments and the LoRA config.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ftdiag.training.data import IGNORE

log = logging.getLogger(__name__)

SAMPLE_CHARS = 400


def run_meta(args: Any, model: Any, tokenizer: Any, template: str | None) -> dict[str, Any]:
    """ftdiag_meta.json for a run trained by the user's own script (findings are added later)."""
    base = base_name(model)
    base_dir = local_base_dir(base)
    if base and base_dir is not None and Path(base).expanduser().is_dir():
        base = str(base_dir)  # absolute, so doctor finds it from any working directory
    lora = lora_config(model)
    first = next(iter(model.parameters()), None) if model is not None else None
    return {
        "tool": "ftdiag", "source": "FtdiagCallback",
        "created": created(),
        "base": base, "base_dir": str(base_dir) if base_dir else None,
        **base_identity(base_dir),
        "template": template, "template_source": "FtdiagCallback(template=...)" if template
        else None,
        "chat_template": getattr(tokenizer, "chat_template", None),
        "tokenizer": tokenizer_facts(tokenizer),
        "hyperparameters": {
            "epochs": args.num_train_epochs, "lr": args.learning_rate,
            "lora_r": lora.get("r"), "lora_alpha": lora.get("lora_alpha"),
            "lora_dropout": lora.get("lora_dropout"),
            "target_modules": lora.get("target_modules"),
            "batch_size": args.per_device_train_batch_size,
            "grad_accum": args.gradient_accumulation_steps,
            "max_length": getattr(args, "max_length", None), "max_steps": args.max_steps,
            "eval_steps": args.eval_steps, "gradient_checkpointing": args.gradient_checkpointing,
            "world_size": args.world_size,
        },
        "device": str(args.device.type) if hasattr(args.device, "type") else str(args.device),
        "dtype": str(first.dtype).replace("torch.", "") if first is not None else None,
        "versions": library_versions(),
    }


def base_name(model: Any) -> str | None:
    """The base model's name or path, as PEFT records it in adapter_config.json."""
    cfg = lora_config(model)
    name = cfg.get("base_model_name_or_path")
    if not name:
        config = getattr(model, "config", None)
        name = getattr(config, "_name_or_path", None) or getattr(config, "name_or_path", None)
    return str(name) if name else None


def local_base_dir(name: str | None) -> Path | None:
    """A local folder holding the base's config.json: the path itself, or the HF cache's copy.

    Never downloads: a callback must not fetch gigabytes in the middle of a training run.
    """
    if not name:
        return None
    path = Path(name).expanduser()
    if (path / "config.json").is_file():
        return path.resolve()
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        return None  # a path that is not there, not a hub id
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(name, "config.json")
    except Exception as exc:  # a malformed id, no cache: no base folder, no hash
        log.debug("no cached config for %s: %s", name, exc)
        return None
    return Path(hit).parent if isinstance(hit, str) else None


def lora_config(model: Any) -> dict[str, Any]:
    """The active LoRA config of a PEFT model as plain data ({} for a plain model)."""
    configs = getattr(model, "peft_config", None) or {}
    active = getattr(model, "active_adapter", None)
    cfg = configs.get(active) if isinstance(active, str) else None
    cfg = cfg or next(iter(configs.values()), None)
    if cfg is None:
        return {}
    targets = getattr(cfg, "target_modules", None)
    return {"r": getattr(cfg, "r", None), "lora_alpha": getattr(cfg, "lora_alpha", None),
            "lora_dropout": getattr(cfg, "lora_dropout", None),
            "target_modules": sorted(targets) if isinstance(targets, (set, list, tuple))
            else targets,
            "base_model_name_or_path": getattr(cfg, "base_model_name_or_path", None)}


def sample_of(input_ids: Any, labels: Any, tokenizer: Any) -> dict[str, Any]:
    """The first example as the model saw it: the masked prompt and the trained completion."""
    ids = input_ids[0].tolist() if input_ids.dim() > 1 else input_ids.tolist()
    lab = labels[0].tolist() if labels.dim() > 1 else labels.tolist()
    trained = [i for i, t in enumerate(lab) if t != IGNORE]
    cut = trained[0] if trained else len(ids)
    out: dict[str, Any] = {"prompt_tokens": cut, "trained_tokens": len(trained)}
    if tokenizer is not None and hasattr(tokenizer, "decode"):
        out["prompt"] = tokenizer.decode(ids[:cut])[-SAMPLE_CHARS:]
        out["completion"] = tokenizer.decode([ids[i] for i in trained])[:SAMPLE_CHARS]
    return out

def created() -> str:
    """UTC time stamp of the meta file."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def base_identity(base_dir: Path | None) -> dict[str, Any]:
    """The base's config hash and weights fingerprint (A008 compares them later)."""
    from ftdiag.adapters.fingerprint import weights_fingerprint
    from ftdiag.model.load import config_hash

    return {"base_config_hash": config_hash(base_dir) if base_dir else None,
            "base_fingerprint": weights_fingerprint(base_dir) if base_dir else None}


def tokenizer_facts(tokenizer: Any) -> dict[str, Any]:
    """pad/eos tokens and ids as the run saw them (R009, D003)."""
    return {key: getattr(tokenizer, key, None)
            for key in ("pad_token", "pad_token_id", "eos_token", "eos_token_id")}


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a run depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for pkg in ("ftdiag", "torch", "transformers", "peft", "trl", "accelerate", "datasets"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out
