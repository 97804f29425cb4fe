"""check-export on LoRA GGUF files (llama.cpp layout) against the PEFT adapter: X004."""

from __future__ import annotations

from pathlib import Path

import pytest
from _adapter_fixtures import copy_adapter, rewrite, scale_b
from _export_fixtures import write_lora_gguf
from typer.testing import CliRunner

from ftdiag.cli.app import app
from ftdiag.export.check import check_export

runner = CliRunner()


def x004(report):  # type: ignore[no-untyped-def]
    return next(c for c in report.checks if c.code == "X004")


def test_faithful_conversion_passes(trained_adapter: Path, tiny_llama: Path,
                                    tmp_path: Path) -> None:
    f = write_lora_gguf(trained_adapter, tiny_llama, tmp_path / "lora.gguf")
    report = check_export(f, trained_adapter, str(tiny_llama))
    assert report.details.kind == "lora-gguf"  # type: ignore[attr-defined]
    assert x004(report).status == "pass" and report.verdict == "pass", x004(report).message


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"alpha": 4.0}, "alpha/r 1 in 14 modules, the adapter scales by 2"),
    ({"drop": 3}, "3 modules without lora_a/lora_b"),
    ({"rank_cut": 1}, "rank differs"),
    ({"arch": "qwen2"}, "architecture 'qwen2', base is 'llama'"),
    ({"adapter_type": "control_vector"}, "not a LoRA adapter"),
])
def test_mismatch_is_x004(kwargs: dict, words: str, trained_adapter: Path, tiny_llama: Path,
                          tmp_path: Path) -> None:
    f = write_lora_gguf(trained_adapter, tiny_llama, tmp_path / "lora.gguf", **kwargs)
    found = x004(check_export(f, trained_adapter, str(tiny_llama)))
    assert found.status == "fail" and words in found.message, found.message


def test_gguf_of_another_adapter_is_x004(trained_adapter: Path, tiny_llama: Path,
                                         tmp_path: Path) -> None:
    other = rewrite(copy_adapter(trained_adapter, tmp_path / "other"), scale_b(-1.0))
    f = write_lora_gguf(other, tiny_llama, tmp_path / "lora.gguf")
    found = x004(check_export(f, trained_adapter, str(tiny_llama)))
    assert found.status == "fail" and "values differ" in found.message


def test_cli_exit_1_and_json(trained_adapter: Path, tiny_llama: Path, tmp_path: Path) -> None:
    f = write_lora_gguf(trained_adapter, tiny_llama, tmp_path / "lora.gguf", drop=1)
    res = runner.invoke(app, ["check-export", str(f), "--adapter", str(trained_adapter),
                              "--base", str(tiny_llama)], env={"COLUMNS": "140"})
    assert res.exit_code == 1 and "X004" in res.stdout and "LoRA GGUF" in res.stdout


def test_a_wrong_alpha_hint_gives_the_numbers_that_fix_it(trained_adapter: Path,
                                                          tiny_llama: Path,
                                                          tmp_path: Path) -> None:
    """llama.cpp scales by alpha/r: the hint names the alpha to write and the --lora-scaled."""
    f = write_lora_gguf(trained_adapter, tiny_llama, tmp_path / "lora.gguf", alpha=4.0)
    hint = x004(check_export(f, trained_adapter, str(tiny_llama))).hint
    assert f"gguf-set-metadata {f} adapter.lora.alpha 8" in hint
    assert f"--lora-scaled {f} 2;" in hint


def test_alpha_pattern_that_no_single_alpha_carries_says_merge(trained_adapter: Path,
                                                               tiny_llama: Path,
                                                               tmp_path: Path) -> None:
    import json

    adapter = copy_adapter(trained_adapter, tmp_path / "pattern")
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["alpha_pattern"] = {"q_proj": cfg["lora_alpha"] * 2}
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    f = write_lora_gguf(trained_adapter, tiny_llama, tmp_path / "lora.gguf")
    found = x004(check_export(f, adapter, str(tiny_llama)))
    assert found.status == "fail" and "2 different ones" in found.hint
    assert "ftdiag merge" in found.hint and "serve it as" not in found.hint
