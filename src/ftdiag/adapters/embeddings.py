"""A013: the adapter updates embed_tokens / lm_head while the base ties the two."""

from __future__ import annotations

from pathlib import Path

from ftdiag.adapters.files import AdapterFiles
from ftdiag.adapters.keys import AdapterModule
from ftdiag.adapters.stats import base_weight_index
from ftdiag.findings import Finding, finding, passed
from ftdiag.model.load import read_config

INPUT = ("embed_tokens", "wte", "word_embeddings")
OUTPUT = ("lm_head", "embed_out")


def tied_embedding_update(files: AdapterFiles, modules: dict[str, AdapterModule],
                          other: list[str], base_dir: Path | None) -> Finding:
    """A013 (warn): one side of a tied embedding/lm_head pair trained or saved on its own."""
    assert files.config is not None
    touched = _touched(files.config.get("modules_to_save") or [], modules, other)
    if not touched:
        return passed("A013", "the adapter leaves the embeddings and lm_head alone")
    if base_dir is None:
        return Finding("A013", "skip", "skipped: no base model given")
    tied = base_ties(base_dir)
    if tied is None:
        return Finding("A013", "skip", "skipped: cannot tell whether the base ties its embeddings")
    if not tied:
        return passed("A013", f"base does not tie its embeddings; adapter updates "
                              f"{', '.join(touched)}")
    if files.config.get("ensure_weight_tying"):
        return passed("A013", "base ties its embeddings and the adapter keeps them tied "
                              "(ensure_weight_tying)")
    return finding("A013", f"the base ties its input embeddings and lm_head "
                           f"(tie_word_embeddings), but the adapter updates "
                           f"{' and '.join(touched)} on its own",
                   hint="on reload or merge one side's update is lost or applied twice: set "
                        "ensure_weight_tying=True in LoraConfig, or untie the base "
                        "(tie_word_embeddings=False) before training",
                   updated=touched)


def base_ties(base_dir: Path) -> bool | None:
    """tie_word_embeddings from config.json, else: the weights hold no separate lm_head."""
    cfg = read_config(base_dir)
    for c in (cfg, cfg.get("text_config") or {}):
        if "tie_word_embeddings" in c:
            return bool(c["tie_word_embeddings"])
    names = base_weight_index(base_dir)
    if not names:
        return None
    has_in = any(n.split(".")[-2] in INPUT for n in names if n.count("."))
    has_out = any(n.split(".")[-2] in OUTPUT for n in names if n.count("."))
    return has_in and not has_out


def _touched(to_save: list[str], modules: dict[str, AdapterModule],
             other: list[str]) -> list[str]:
    """Which of the pair the adapter trains: modules_to_save, saved weights, LoRA on them."""
    names = set(to_save) | {n.split(".")[-1] for n in modules}
    names |= {part for k in other for part in k.split(".")}
    side = {"embeddings": INPUT, "lm_head": OUTPUT}
    return [label for label, group in side.items()
            if any(n in group or n.endswith(tuple("." + g for g in group)) for n in names)]
