"""A014: the adapter was fitted to a quantized base and is now used at another precision."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ftdiag.findings import Finding, finding, passed
from ftdiag.model.load import read_config

QUANT_NAME = re.compile(r"(bnb|[-_](?:4|8)bit|\bnf4\b|gptq|\bawq\b|hqq|quanto|exl2)",
                        re.IGNORECASE)
METHODS = {"gptq": "gptq", "awq": "awq", "hqq": "hqq", "quanto": "quanto", "exl2": "exl2"}


def training_quantization(config: dict[str, Any]) -> tuple[str, str] | None:
    """(method, evidence) when the recorded base was quantized: its config, or a *-bnb-4bit name."""
    name = str(config.get("base_model_name_or_path") or "")
    local = Path(name).expanduser()
    if name and (local / "config.json").is_file():
        method = quantization_method(local)
        if method:
            return method, f"quantization_config of {name}"
    m = QUANT_NAME.search(name)
    if m is None:
        return None
    word = m.group(1).strip("-_").lower()
    return METHODS.get(word, "bitsandbytes"), f"base name {name!r}"


def quantization_method(model_dir: Path) -> str | None:
    """quant_method of a model folder's quantization_config, None for a plain checkpoint."""
    try:
        quant = read_config(model_dir).get("quantization_config")
    except Exception:  # an unreadable config is reported elsewhere
        return None
    if not quant:
        return None
    return str(quant.get("quant_method", "quantized")) if isinstance(quant, dict) else "quantized"


def quantized_training_base(config: dict[str, Any], base_dir: Path | None) -> Finding:
    """A014 (warn): trained on a quantized base, checked or served with another precision."""
    trained = training_quantization(config)
    if trained is None:
        return passed("A014", "no quantized training base recorded")
    method, why = trained
    if base_dir is None:
        return Finding("A014", "skip", f"skipped: trained on a {method} base ({why}); no base "
                                       "given to compare")
    given = quantization_method(base_dir)
    if given == method:
        return passed("A014", f"trained and checked on a {given} base")
    return finding("A014", f"the adapter was trained against a {method}-quantized base ({why}) "
                           f"but the base given is {given or 'not quantized'} ({base_dir})",
                   hint="the update was fitted to the dequantized weights: compare and serve "
                        "with the same quantized base, or re-train on the full-precision one",
                   trained_on=method, evidence_of_quantization=why,
                   given=given or "full precision")
