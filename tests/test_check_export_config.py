"""check-export on the files beside a merged model: X006 adapter files, X007 config.json, X008 EOS.

Every export is a real `merge_and_unload()` + `save_pretrained`, then changed the way users
change them by hand (or by a script that saves twice into one folder).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from _export_fixtures import merge_to, status
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from ftdiag.export.check import check_export


@pytest.fixture
def merged(tiny_llama: Path, trained_adapter: Path, tmp_path: Path) -> Path:
    return merge_to(tiny_llama, trained_adapter, tmp_path / "merged")


def codes(export: Path, adapter: Path, base: Path) -> dict[str, str]:
    report = check_export(export, adapter, str(base))
    return {c.code: c.status for c in report.checks}


def edit(path: Path, **changes: object) -> None:
    doc = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    path.write_text(json.dumps(doc))


def test_a_healthy_merge_passes_the_new_checks(merged: Path, trained_adapter: Path,
                                               tiny_llama: Path) -> None:
    got = codes(merged, trained_adapter, tiny_llama)
    assert {got[c] for c in ("X006", "X007", "X008")} == {"pass"}, got


def test_adapter_files_left_in_the_merged_folder_are_x006(merged: Path, trained_adapter: Path,
                                                          tiny_llama: Path) -> None:
    """The user saved the PeftModel and the merged model into one folder."""
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy2(trained_adapter / name, merged / name)
    report = check_export(merged, trained_adapter, str(tiny_llama))
    x006 = next(c for c in report.checks if c.code == "X006")
    assert x006.status == "fail" and "applied twice" in x006.message
    # what the evidence says transformers does: the adapter comes back on load
    reloaded = AutoModelForCausalLM.from_pretrained(str(merged), dtype=torch.float32)
    assert getattr(reloaded, "peft_config", None), "transformers did not re-attach the adapter"


def test_a_bare_backbone_architecture_is_x007(merged: Path, trained_adapter: Path,
                                              tiny_llama: Path) -> None:
    edit(merged / "config.json", architectures=["LlamaModel"])
    report = check_export(merged, trained_adapter, str(tiny_llama))
    x007 = next(c for c in report.checks if c.code == "X007")
    assert x007.status == "fail" and "LlamaModel" in x007.message


def test_tie_flag_over_a_distinct_trained_head_is_x007(merged: Path, trained_adapter: Path,
                                                        tiny_llama: Path) -> None:
    edit(merged / "config.json", tie_word_embeddings=True)
    x007 = next(c for c in check_export(merged, trained_adapter, str(tiny_llama)).checks
                if c.code == "X007")
    assert x007.status == "fail" and "replaced by the embeddings" in x007.message


def test_a_misnamed_head_is_x007(merged: Path, trained_adapter: Path, tiny_llama: Path) -> None:
    tensors = load_file(str(merged / "model.safetensors"))
    tensors["model.lm_head.weight"] = tensors.pop("lm_head.weight")
    save_file(tensors, str(merged / "model.safetensors"), metadata={"format": "pt"})
    x007 = next(c for c in check_export(merged, trained_adapter, str(tiny_llama)).checks
                if c.code == "X007")
    assert x007.status == "fail" and "model.lm_head.weight is misnamed" in x007.message


def test_a_quantization_config_over_fp32_tensors_warns_x007(merged: Path, trained_adapter: Path,
                                                            tiny_llama: Path) -> None:
    edit(merged / "config.json", quantization_config={"quant_method": "bitsandbytes",
                                                      "load_in_4bit": True})
    report = check_export(merged, trained_adapter, str(tiny_llama))
    assert status(report, "X007") == "warn" and report.verdict == "warn"


def test_eos_ids_without_the_trained_end_token_are_x008(merged: Path, trained_adapter: Path,
                                                        tiny_llama: Path) -> None:
    edit(merged / "generation_config.json", eos_token_id=[1])
    edit(merged / "config.json", eos_token_id=1)
    report = check_export(merged, trained_adapter, str(tiny_llama))
    x008 = next(c for c in report.checks if c.code == "X008")
    assert x008.status == "warn" and x008.evidence["turn_end_id"] == 3
    assert x008.evidence["export_eos_ids"] == [1]


def test_an_unreadable_config_is_one_error(merged: Path, trained_adapter: Path,
                                           tiny_llama: Path) -> None:
    from ftdiag.errors import FtdiagError

    (merged / "generation_config.json").write_text("{broken")
    with pytest.raises(FtdiagError, match=r"cannot read .*generation_config\.json"):
        check_export(merged, trained_adapter, str(tiny_llama))
