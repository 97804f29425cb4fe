"""Fixtures for the ab-test and merge tests: a zero-B adapter, a merged model, title files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ftdiag.testing import tiny

TITLES = ["Steel bottle", "Cotton shirt", "USB cable", "Frying pan"]
REFS = ["A durable steel bottle that keeps drinks cold all day.",
        "A soft cotton shirt that is breathable and easy to wash.",
        "A fast braided cable that charges phones quickly.",
        "A non-stick pan that heats evenly and cleans easily."]


def save_zero_adapter(base_dir: Path, out: Path) -> Path:
    """get_peft_model on the base, saved without training: every lora_B is zero."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM",
                     target_modules=tiny.default_targets("llama"))
    get_peft_model(model, cfg).save_pretrained(str(out))
    return out


def write_titles(path: Path, with_refs: bool = True) -> Path:
    """JSONL in the AmazonTitles shape (title, content), or a .txt with one title per line."""
    if path.suffix == ".txt":
        path.write_text("\n".join(TITLES) + "\n", encoding="utf-8")
    else:
        rows = [{"uid": str(i), "title": t, **({"content": r} if with_refs else {})}
                for i, (t, r) in enumerate(zip(TITLES, REFS, strict=True))]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def zero_adapter(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_zero_adapter(tiny_llama, tmp_path_factory.mktemp("zero") / "adapter")


@pytest.fixture(scope="session")
def merged_dir(tiny_llama: Path, trained_adapter: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ftdiag.export.merge import merge_adapter

    out = tmp_path_factory.mktemp("merged") / "merged"
    report = merge_adapter(trained_adapter, str(tiny_llama), out)
    assert report.verdict != "fail", report.to_dict()
    return out


@pytest.fixture
def titles_jsonl(tmp_path: Path) -> Path:
    return write_titles(tmp_path / "titles.jsonl")


def two_adapter_folder(adapter: Path, folder: Path) -> Path:
    """`adapter` at the top ('default') and a copy of it where PEFT saves an adapter 'other'."""
    shutil.copytree(adapter, folder)
    shutil.copytree(adapter, folder / "other")
    return folder
