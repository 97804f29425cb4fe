"""`ftdiag check-adapter` through the real CLI: report, --json, exit codes, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _adapter_fixtures import WEIGHTS, copy_adapter, edit_config, rewrite, zero_b, zero_b_layer
from typer.testing import CliRunner

from ftdiag.cli.app import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["check-adapter", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def test_healthy_adapter_report_and_exit_0(trained_adapter: Path) -> None:
    code, out, _ = run(str(trained_adapter))
    assert code == 0
    assert "verdict: PASS" in out
    for text in ("A003", "R005", "per-layer LoRA stats", "runtime status", "eval mode"):
        assert text in out


def test_json_is_one_document(trained_gpt2_adapter: Path) -> None:
    code, out, _ = run(str(trained_gpt2_adapter), "--json", "--probe", "Title: mug\n")
    doc = json.loads(out)
    assert code == 0 and doc["command"] == "check-adapter" and doc["verdict"] == "pass"
    assert doc["layers"]["run"] == ["S", "R"]
    assert doc["details"]["runtime"]["probe"]["prompts"] == 1
    assert {c["code"] for c in doc["checks"]} >= {"A001", "A010", "R001", "R009"}


def test_zero_b_exits_1_with_a003(trained_adapter: Path, tmp_path: Path) -> None:
    adapter = rewrite(copy_adapter(trained_adapter, tmp_path / "a"), zero_b)
    code, out, _ = run(str(adapter), "--json")
    doc = json.loads(out)
    assert code == 1 and doc["verdict"] == "fail"
    assert {"A003", "R005"} <= {f["code"] for f in doc["findings"]}


def test_warning_exits_1_only_with_strict(trained_adapter: Path, tmp_path: Path) -> None:
    adapter = rewrite(copy_adapter(trained_adapter, tmp_path / "a"), zero_b_layer(0))
    assert run(str(adapter), "--static-only")[0] == 0
    code, out, _ = run(str(adapter), "--static-only", "--strict")
    assert code == 1 and "A010" in out and "verdict: WARN" in out


def test_static_only_says_runtime_was_skipped(trained_adapter: Path) -> None:
    code, out, _ = run(str(trained_adapter), "--static-only")
    assert code == 0 and "R skipped: --static-only" in out and "runtime status" not in out


def test_explicit_base_option(trained_adapter: Path, tiny_llama: Path) -> None:
    code, out, _ = run(str(trained_adapter), "--base", str(tiny_llama), "--json", "--static-only")
    assert code == 0 and json.loads(out)["details"]["base_dir"] == str(tiny_llama)


@pytest.mark.parametrize("damage", ["missing", "file", "truncated", "json", "type", "no-base",
                                    "bad-base"])
def test_bad_input_exits_2_with_one_line(trained_adapter: Path, tmp_path: Path,
                                         damage: str) -> None:
    adapter = copy_adapter(trained_adapter, tmp_path / "a")
    args = [str(adapter)]
    if damage == "missing":
        args = [str(tmp_path / "nope")]
    elif damage == "file":
        args = [str(adapter / WEIGHTS)]
    elif damage == "truncated":
        (adapter / WEIGHTS).write_bytes((adapter / WEIGHTS).read_bytes()[:100])
    elif damage == "json":
        (adapter / "adapter_config.json").write_text("not json {")
    elif damage == "type":
        edit_config(adapter, peft_type="IA3")
    elif damage == "no-base":
        edit_config(adapter, base_model_name_or_path="meta-llama/Llama-2-7b-hf")
    else:
        args += ["--base", str(tmp_path / "no-such-model")]
    code, out, err = run(*args)
    assert code == 2
    assert out == "" and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:")


def test_hub_base_name_error_asks_for_base(trained_adapter: Path, tmp_path: Path) -> None:
    adapter = edit_config(copy_adapter(trained_adapter, tmp_path / "a"),
                          base_model_name_or_path="meta-llama/Llama-2-7b-hf")
    assert "--base" in run(str(adapter))[2]


def test_missing_weights_is_a001_not_an_error(trained_adapter: Path, tmp_path: Path) -> None:
    adapter = copy_adapter(trained_adapter, tmp_path / "a")
    (adapter / WEIGHTS).unlink()
    code, out, _ = run(str(adapter), "--json")
    assert code == 1 and [f["code"] for f in json.loads(out)["findings"]] == ["A001"]


def test_adapter_for_a_bigger_base_shows_shapes(tiny_llama: Path, tmp_path: Path) -> None:
    from ftdiag.testing import tiny

    big = tiny.save_base(tmp_path / "big", "llama", hidden=64)
    adapter = tiny.train_toy_adapter(big, tmp_path / "a", steps=1)
    code, out, _ = run(str(adapter), "--base", str(tiny_llama))
    flat = re.sub(r"[\s│]", "", out)
    assert code == 1 and "A008" in out and "adapterbuiltforanotherbase" in flat
    assert re.search(r"A\[4,\d+\]B\[\d+,", flat)  # printed literally, not as markup
    assert "Rskipped:cannotloadtheadapter" in flat
