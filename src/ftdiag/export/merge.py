"""merge: fold a LoRA adapter into its base in fp32, save atomically, verify vs base+adapter."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftdiag.atomic import atomic_dir, is_nonempty_dir
from ftdiag.errors import FtdiagError
from ftdiag.findings import Details, Finding, Report, finding, passed
from ftdiag.generation.metrics import logit_gap, merged_gap_finding
from ftdiag.prompts.template import DEFAULT_TEMPLATE, recorded_template
from ftdiag.runmeta import META_FILE

log = logging.getLogger(__name__)

HALF = {"float16", "bfloat16", "half", "fp16", "bf16"}
PROBE_TITLES = ["Stainless steel water bottle", "Wireless headphones with noise cancelling",
                "Organic cotton t-shirt"]
MERGE_META = "ftdiag_merge.json"


@dataclass
class MergeDetails(Details):
    """What `ftdiag merge` wrote and verified (its report's details)."""

    out: str
    base: str
    adapter: str
    probes: int  # probe prompts the merged model was verified on
    dtype: str = "float32"
    notes: list[str] = field(default_factory=list)


def precision_check(base_dir: Path, adapter_dir: Path | None = None) -> Finding:
    """R007: a 4/8-bit or half-precision base, or an adapter fitted to a quantized base (A014)."""
    from ftdiag.adapters.files import read_adapter_config
    from ftdiag.adapters.quantized import training_quantization
    from ftdiag.model.load import read_config

    cfg = read_config(base_dir)
    quant = cfg.get("quantization_config")
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32")
    trained = (training_quantization(read_adapter_config(adapter_dir))
               if adapter_dir is not None and (adapter_dir / "adapter_config.json").is_file()
               else None)
    if trained and not quant:
        return finding("R007", f"the adapter was trained against a {trained[0]}-quantized base "
                               f"({trained[1]}); merging it into this {dtype} base changes what "
                               "it does", hint="the update was fitted to the dequantized "
                               "weights: serve base + adapter on the quantized base, or "
                               "re-train on the full-precision one",
                       quantization=trained[0], trained_on=trained[1], dtype=dtype)
    if quant:
        method = quant.get("quant_method", "?") if isinstance(quant, dict) else "?"
        return finding("R007", f"base is quantized ({method}); dequantized to fp32 before merging",
                       hint="merge into the full-precision base when you have it",
                       quantization=method)
    if dtype in HALF:
        return finding("R007", f"base stored in {dtype}; merged in fp32 so the update is not "
                       "rounded away", hint="the merged model is saved in fp32", dtype=dtype)
    return passed("R007", f"base in {dtype}; merged in fp32", dtype=dtype)


def probe_prompts(adapter_dir: Path, tokenizer: Any) -> list[str]:
    """A few prompts in the training format (recorded template, else the default)."""
    tpl = recorded_template(adapter_dir)
    if tpl is not None and not tpl.is_chat:
        return [tpl.render(t, tokenizer) for t in PROBE_TITLES]
    return [DEFAULT_TEMPLATE.replace("{title}", t) for t in PROBE_TITLES]


def _logits(model: Any, tokenizer: Any, prompts: list[str]) -> list[Any]:
    import torch

    outs = []
    for p in prompts:
        enc = tokenizer(p, return_tensors="pt")
        with torch.inference_mode():
            outs.append(model(**enc).logits[0].float())
    return outs


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FtdiagError(f"--out {out} is a file, expected a folder")
    if is_nonempty_dir(out) and not force:
        raise FtdiagError(f"--out {out} is not empty", hint="pass --force to replace it")


def merge_adapter(adapter_dir: Path | str, base: str | None, out: Path | str,
                  force: bool = False, revision: str | None = None,
                  adapter_revision: str | None = None) -> Report:
    """Merge in fp32, save model + tokenizer to `out` atomically, verify the saved model (B002)."""
    from ftdiag.adapters.folder import other_adapters_note
    from ftdiag.adapters.preflight import preflight, tokenizer_source

    out = Path(out)
    _check_out(out, force)
    pre = preflight(adapter_dir, base, revision=revision, adapter_revision=adapter_revision)
    adapter_dir = pre.adapter_dir
    report = Report("merge")
    report.add(*pre.static.checks)
    report.layers_run.append("S")
    if pre.blocked:
        report.layers_skipped.update({"R": "static layer failed", "G": "static layer failed"})
        return report
    assert pre.base_dir is not None  # resolved, or preflight raised / A001 blocked
    import torch  # after the checks that need no model: a bad path fails in well under a second
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from ftdiag.model.load import load_tokenizer

    base_dir = pre.base_dir
    report.add(precision_check(base_dir, adapter_dir))
    report.layers_run += ["R", "G"]
    try:
        plain = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
        model: Any = PeftModel.from_pretrained(plain.eval(), str(adapter_dir)).eval()
    except Exception as exc:
        raise FtdiagError(f"cannot load base + adapter for merging: {exc}") from exc
    tokenizer = load_tokenizer(tokenizer_source(adapter_dir, base_dir) or base_dir)
    prompts = probe_prompts(adapter_dir, tokenizer)
    reference = _logits(model, tokenizer, prompts)
    merged = model.merge_and_unload()
    with atomic_dir(out, replace=True) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if (adapter_dir / META_FILE).is_file():
            shutil.copy2(adapter_dir / META_FILE, tmp / META_FILE)
        (tmp / MERGE_META).write_text(json.dumps(
            {"adapter": str(adapter_dir.resolve()), "base": str(base_dir), "dtype": "float32"},
            indent=2) + "\n", encoding="utf-8")
        del merged, model, plain
        reloaded = AutoModelForCausalLM.from_pretrained(str(tmp), dtype=torch.float32).eval()
        report.add(verify(reference, _logits(reloaded, tokenizer, prompts)))
    note = other_adapters_note(adapter_dir)
    report.details = MergeDetails(str(out), str(base_dir), str(adapter_dir), len(prompts),
                                  notes=[note] if note else [])
    return report


def verify(reference: list[Any], merged: list[Any]) -> Finding:
    """B002: the saved merged model against base+adapter on the probe prompts."""
    return merged_gap_finding(
        logit_gap(reference, merged), "saved merged model", f" on {len(reference)} probe prompts",
        hint="check tied embeddings / modules_to_save; re-run ftdiag merge",
        first_divergent_position=_first_argmax_divergence(reference, merged))


def _first_argmax_divergence(a: list[Any], b: list[Any]) -> int | None:
    """First prompt position (over all probes, in order) where the top-1 token differs."""
    offset = 0
    for x, y in zip(a, b, strict=True):
        differ = (x.argmax(-1) != y.argmax(-1)).nonzero()
        if len(differ):
            return offset + int(differ[0])
        offset += x.shape[0]
    return None
