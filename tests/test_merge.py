"""`ftdiag merge`: fp32 merge, atomic save, verified against base+adapter, never clobbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _ab_helpers import two_adapter_folder
from typer.testing import CliRunner

from ftdiag.cli.app import app
from ftdiag.export.merge import MergeDetails, merge_adapter
from ftdiag.model.load import load_adapter, load_base
from ftdiag.prompts.template import DEFAULT_TEMPLATE
from ftdiag.testing import tiny

runner = CliRunner()


def test_merged_model_equals_base_plus_adapter(tiny_llama: Path, trained_adapter: Path,
                                               tmp_path: Path) -> None:
    out = tmp_path / "merged"
    report = merge_adapter(trained_adapter, str(tiny_llama), out)
    b002 = next(c for c in report.checks if c.code == "B002")
    assert report.command == "merge" and b002.status == "pass"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in
                                                                       out.iterdir()}
    merged = load_base(out)
    loaded = load_base(tiny_llama)
    peft = load_adapter(loaded, trained_adapter)
    enc = loaded.tokenizer(DEFAULT_TEMPLATE.replace("{title}", "Mug"), return_tensors="pt")
    with torch.no_grad():
        gap = (merged.model(**enc).logits - peft(**enc).logits).abs().max()
    assert float(gap) < 1e-4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left
    assert report.details == MergeDetails(str(out), str(tiny_llama), str(trained_adapter), 3)
    assert report.layers_run == ["S", "R", "G"]
    assert json.loads((out / "ftdiag_merge.json").read_text()) == {
        "adapter": str(trained_adapter.resolve()), "base": str(tiny_llama), "dtype": "float32"}


def test_a_folder_with_more_adapters_says_which_one_was_merged(tiny_llama: Path,
                                                               trained_adapter: Path,
                                                               tmp_path: Path) -> None:
    folder = two_adapter_folder(trained_adapter, tmp_path / "two")
    res = runner.invoke(app, ["merge", "--adapter", str(folder), "--base", str(tiny_llama),
                              "--out", str(tmp_path / "merged")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.stdout.split())
    assert "note: " in text and "2 adapters ('default', 'other')" in text
    assert "this run uses 'default'" in text


def test_refuses_non_empty_out_without_force(tiny_llama: Path, trained_adapter: Path,
                                             tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    args = ["merge", "--adapter", str(trained_adapter), "--base", str(tiny_llama),
            "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "not empty" in res.stderr
    assert (out / "mine.txt").read_text() == "keep"
    res = runner.invoke(app, [*args, "--force", "--json"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["command"] == "merge"
    assert not (out / "mine.txt").exists() and (out / "config.json").is_file()


def test_half_precision_base_warns_r007_and_merges_in_fp32(trained_adapter: Path,
                                                           tmp_path: Path) -> None:
    base = tiny.save_base(tmp_path / "base")
    model = load_base(base).model.to(torch.float16)
    model.save_pretrained(base)
    report = merge_adapter(trained_adapter, str(base), tmp_path / "merged")
    assert "R007" in report.codes()
    assert next(c for c in report.checks if c.code == "B002").status == "pass"
    cfg = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert (cfg.get("dtype") or cfg.get("torch_dtype")) == "float32"


def test_missing_base_is_one_line_exit_2(trained_adapter: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["merge", "--adapter", str(trained_adapter), "--base",
                              str(tmp_path / "nope"), "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "Traceback" not in res.stderr
    assert not (tmp_path / "m").exists()


def test_a_save_that_lost_the_update_is_b002_exit_1(tiny_llama: Path, trained_adapter: Path,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """PEFT's merge made to drop the LoRA layers unmerged: what is saved is the base."""
    from peft.tuners.lora import LoraModel

    monkeypatch.setattr(LoraModel, "merge_and_unload", LoraModel.unload)
    res = runner.invoke(app, ["merge", "--adapter", str(trained_adapter), "--base",
                              str(tiny_llama), "--out", str(tmp_path / "m"), "--json"])
    assert res.exit_code == 1, res.output
    b002 = next(c for c in json.loads(res.stdout)["checks"] if c["code"] == "B002")
    assert b002["status"] == "fail" and b002["evidence"]["max_abs_logit_diff"] > 1e-2


def test_merge_keeps_the_training_record_the_adapters_tokenizer_and_its_quantized_base(
        tiny_llama: Path, trained_adapter: Path, tmp_path: Path) -> None:
    """The adapter folder carries ftdiag_meta.json, its own tokenizer (model_max_length 77) and
    a recorded base named like a 4-bit one: each must reach the merged folder or R007."""
    from _adapter_fixtures import copy_adapter, edit_config

    adapter = edit_config(copy_adapter(trained_adapter, tmp_path / "adapter"),
                          base_model_name_or_path="org/tiny-bnb-4bit")
    meta = json.dumps({"template": DEFAULT_TEMPLATE}) + "\n"
    (adapter / "ftdiag_meta.json").write_text(meta)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_llama / name).is_file():
            (adapter / name).write_bytes((tiny_llama / name).read_bytes())
    cfg = json.loads((adapter / "tokenizer_config.json").read_text())
    (adapter / "tokenizer_config.json").write_text(json.dumps({**cfg, "model_max_length": 77}))
    out = tmp_path / "merged"
    report = merge_adapter(adapter, str(tiny_llama), out)
    assert (out / "ftdiag_meta.json").read_text() == meta
    assert json.loads((out / "tokenizer_config.json").read_text())["model_max_length"] == 77
    r007 = next(c for c in report.checks if c.code == "R007")
    assert r007.evidence == {"quantization": "bitsandbytes",
                             "trained_on": "base name 'org/tiny-bnb-4bit'", "dtype": "float32"}
    written = {"adapter": str(adapter.resolve()), "base": str(tiny_llama), "dtype": "float32"}
    assert (out / "ftdiag_merge.json").read_text() == json.dumps(written, indent=2) + "\n"


def test_a_base_and_adapter_peft_cannot_load_is_one_user_error(
        tiny_llama: Path, trained_adapter: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from peft import PeftModel

    from ftdiag.errors import FtdiagError

    def refuse(*args: object, **kw: object) -> None:
        raise ValueError("no such module")

    monkeypatch.setattr(PeftModel, "from_pretrained", refuse)
    with pytest.raises(FtdiagError) as err:
        merge_adapter(trained_adapter, str(tiny_llama), tmp_path / "m")
    assert str(err.value) == "cannot load base + adapter for merging: no such module"
    assert not (tmp_path / "m").exists()
