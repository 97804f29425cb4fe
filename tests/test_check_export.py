"""`ftdiag check-export` on merged safetensors folders: X001, X002, X003 and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _adapter_fixtures import copy_adapter, edit_config, rewrite, scale_b
from _export_fixtures import copy_weight, merge_to, save_base_as, status
from typer.testing import CliRunner

from ftdiag.cli.app import app
from ftdiag.export.check import check_export

runner = CliRunner()


@pytest.fixture(scope="module")
def merged32(tiny_llama: Path, trained_adapter: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Path:
    return merge_to(tiny_llama, trained_adapter, tmp_path_factory.mktemp("m32") / "merged")


def test_correct_fp32_merge_passes(merged32: Path, trained_adapter: Path,
                                   tiny_llama: Path) -> None:
    report = check_export(merged32, trained_adapter, str(tiny_llama))
    assert report.verdict == "pass", report.to_dict()["checks"]
    mods = report.details.modules  # type: ignore[attr-defined]
    assert mods and all(m.verdict == "merged" for m in mods)
    assert all(abs(m.scale - 1) < 1e-3 and m.cosine > 0.999 and m.rel_err < 1e-3 for m in mods)


def test_export_holding_the_base_is_x001(tiny_llama: Path, trained_adapter: Path,
                                         tmp_path: Path) -> None:
    export = save_base_as(tiny_llama, tmp_path / "export")
    report = check_export(export, trained_adapter, str(tiny_llama))
    assert status(report, "X001") == "fail" and report.exit_code() == 1


def test_base_saved_in_bf16_is_still_x001(tiny_llama: Path, trained_adapter: Path,
                                          tmp_path: Path) -> None:
    export = save_base_as(tiny_llama, tmp_path / "export", torch.bfloat16)
    assert status(check_export(export, trained_adapter, str(tiny_llama)), "X001") == "fail"


def test_bf16_merge_of_a_trained_adapter_passes(tiny_llama: Path, trained_adapter: Path,
                                                tmp_path: Path) -> None:
    export = merge_to(tiny_llama, trained_adapter, tmp_path / "m16", torch.bfloat16)
    report = check_export(export, trained_adapter, str(tiny_llama))
    assert {status(report, c) for c in ("X001", "X002", "X003")} == {"pass"}


def test_merge_with_the_wrong_scaling_is_x002(tiny_llama: Path, trained_adapter: Path,
                                              tmp_path: Path) -> None:
    doubled = edit_config(copy_adapter(trained_adapter, tmp_path / "a2"), lora_alpha=16)
    export = merge_to(tiny_llama, doubled, tmp_path / "export")
    report = check_export(export, trained_adapter, str(tiny_llama))
    x002 = next(c for c in report.checks if c.code == "X002")
    assert x002.status == "fail" and "scale 2.000" in x002.message
    assert status(report, "X001") == "pass"


def test_alpha_off_by_a_quarter_is_x002(tiny_llama: Path, trained_adapter: Path,
                                        tmp_path: Path) -> None:
    """lora_alpha 10 instead of 8: every module's update is 1.25x, far outside the fit's noise."""
    alpha = json.loads((trained_adapter / "adapter_config.json").read_text())["lora_alpha"]
    wrong = edit_config(copy_adapter(trained_adapter, tmp_path / "a"), lora_alpha=alpha * 1.25)
    export = merge_to(tiny_llama, wrong, tmp_path / "export")
    report = check_export(export, trained_adapter, str(tiny_llama))
    x002 = next(c for c in report.checks if c.code == "X002")
    assert x002.status == "fail" and "scale 1.250" in x002.message, x002.message
    assert status(report, "X001") == "pass"


def test_rslora_scaling_is_alpha_over_sqrt_r(tiny_llama: Path, trained_adapter: Path,
                                             tmp_path: Path) -> None:
    rs = edit_config(copy_adapter(trained_adapter, tmp_path / "rs"), use_rslora=True)
    export = merge_to(tiny_llama, rs, tmp_path / "export")
    assert status(check_export(export, rs, str(tiny_llama)), "X002") == "pass"
    assert status(check_export(export, trained_adapter, str(tiny_llama)), "X002") == "fail"


def test_partial_merge_is_x002(merged32: Path, tiny_llama: Path, trained_adapter: Path,
                               tmp_path: Path) -> None:
    export = save_base_as(merged32, tmp_path / "export")  # a copy of the merged folder
    copy_weight(tiny_llama, export, "model.layers.1.mlp.down_proj.weight")
    report = check_export(export, trained_adapter, str(tiny_llama))
    x002 = next(c for c in report.checks if c.code == "X002")
    assert x002.status == "fail"
    assert x002.evidence["base_like"] == ["model.layers.1.mlp.down_proj"]
    assert status(report, "X001") == "pass"  # one base-like module: the rest were merged


def test_gpt2_conv1d_merge_passes_and_base_fails(tiny_gpt2: Path, trained_gpt2_adapter: Path,
                                                 tmp_path: Path) -> None:
    export = merge_to(tiny_gpt2, trained_gpt2_adapter, tmp_path / "merged")
    assert check_export(export, trained_gpt2_adapter, str(tiny_gpt2)).verdict == "pass"
    base = save_base_as(tiny_gpt2, tmp_path / "base")
    assert status(check_export(base, trained_gpt2_adapter, str(tiny_gpt2)), "X001") == "fail"


def test_small_update_rounded_away_by_bf16_is_x003(tiny_llama: Path, trained_adapter: Path,
                                                   tmp_path: Path) -> None:
    small = rewrite(copy_adapter(trained_adapter, tmp_path / "small"), scale_b(0.001))
    bf16 = merge_to(tiny_llama, small, tmp_path / "bf16", torch.bfloat16)
    report = check_export(bf16, small, str(tiny_llama))
    x003 = next(c for c in report.checks if c.code == "X003")
    assert x003.status == "warn" and x003.evidence["overall"] > 0.5
    fp32 = merge_to(tiny_llama, small, tmp_path / "fp32")
    assert status(check_export(fp32, small, str(tiny_llama)), "X003") == "pass"


def test_cli_json_and_report_files(merged32: Path, trained_adapter: Path, tiny_llama: Path,
                                   tmp_path: Path) -> None:
    res = runner.invoke(app, ["check-export", str(merged32), "--adapter", str(trained_adapter),
                              "--base", str(tiny_llama), "--json",
                              "--markdown", str(tmp_path / "r.md"),
                              "--html", str(tmp_path / "r.html"),
                              "--junit", str(tmp_path / "r.xml")])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["command"] == "check-export" and doc["details"]["kind"] == "merged-safetensors"
    assert doc["details"]["modules"][0]["verdict"] == "merged"
    assert "X002" in (tmp_path / "r.md").read_text()
    assert "<h1>ftdiag check-export" in (tmp_path / "r.html").read_text()
    assert 'failures="0"' in (tmp_path / "r.xml").read_text()


def test_rich_output_names_the_modules(merged32: Path, trained_adapter: Path,
                                       tiny_llama: Path) -> None:
    res = runner.invoke(app, ["check-export", str(merged32), "--adapter", str(trained_adapter),
                              "--base", str(tiny_llama)], env={"COLUMNS": "140"})
    assert res.exit_code == 0, res.stderr
    assert "q_proj" in res.stdout and "verdict: PASS" in res.stdout


def _truncate(folder: Path) -> Path:
    f = folder / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return folder


@pytest.mark.parametrize("case", ["missing-export", "truncated", "missing-adapter",
                                  "not-gguf", "empty-dir"])
def test_bad_input_is_one_line_exit_2(case: str, merged32: Path, tiny_llama: Path,
                                      trained_adapter: Path, tmp_path: Path) -> None:
    export, adapter = merged32, trained_adapter
    if case == "missing-export":
        export = tmp_path / "nope"
    elif case == "truncated":
        export = _truncate(save_base_as(merged32, tmp_path / "t"))
    elif case == "missing-adapter":
        adapter = tmp_path / "no-adapter"
    elif case == "not-gguf":
        export = tmp_path / "model.gguf"
        export.write_bytes(b"not a gguf file at all")
    else:
        export = tmp_path / "empty"
        export.mkdir()
    res = runner.invoke(app, ["check-export", str(export), "--adapter", str(adapter),
                              "--base", str(tiny_llama)])
    assert res.exit_code == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_json_error_document_on_bad_input(trained_adapter: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["check-export", str(tmp_path / "nope"), "--adapter",
                              str(trained_adapter), "--json"])
    assert res.exit_code == 2
    doc = json.loads(res.stdout)
    assert doc["command"] == "check-export" and doc["verdict"] == "error"
    assert "export not found" in doc["error"]["message"]


def test_sharded_export_missing_a_shard_is_exit_2(merged32: Path, trained_adapter: Path,
                                                  tiny_llama: Path, tmp_path: Path) -> None:
    export = save_base_as(merged32, tmp_path / "sharded")
    (export / "model.safetensors").rename(export / "model-00001-of-00002.safetensors")
    keys = json.loads(runner.invoke(app, ["check-export", str(merged32), "--adapter",
                                          str(trained_adapter), "--base", str(tiny_llama),
                                          "--json"]).stdout)["details"]["modules"]
    weight_map = {f"{m['module']}.weight": "model-00002-of-00002.safetensors" for m in keys}
    (export / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    res = runner.invoke(app, ["check-export", str(export), "--adapter", str(trained_adapter),
                              "--base", str(tiny_llama)])
    assert res.exit_code == 2 and "model-00002-of-00002.safetensors" in res.stderr
