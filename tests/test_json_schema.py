"""Each command's `--json` keeps its schema: keys, value types and every list's row shape.

tests/schemas/NAME.json is the schema of the document (see tests/_schema.py); `make schemas`
rewrites them from these runs and shows the diff for review. `evidence` is free-form per finding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _ab_helpers import write_titles
from _loss_helpers import write_run
from _schema import conforms, pin, schema
from _train_helpers import toy_records, write_jsonl
from typer.testing import CliRunner

from ftdiag.cli.app import app
from ftdiag.testing import tiny

runner = CliRunner()


def _json(args: list[str], code: int) -> dict[str, Any]:
    """`ftdiag ARGS --json`, which must exit with `code`, and its document."""
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == code, res.output
    doc = json.loads(res.stdout)
    assert code == (1 if doc["verdict"] == "fail" else 0)
    return doc


_pin = pin  # the name other test files import


def test_check_adapter_json_keys(trained_adapter: Path, tiny_llama: Path) -> None:
    _pin("check-adapter", _json(["check-adapter", str(trained_adapter), "--base",
                                 str(tiny_llama)], 0))


def test_check_adapter_static_only_json_keys(trained_adapter: Path, tiny_llama: Path) -> None:
    _pin("check-adapter-static", _json(["check-adapter", str(trained_adapter), "--base",
                                        str(tiny_llama), "--static-only"], 0))


def test_ab_test_json_keys(trained_adapter: Path, tiny_llama: Path, tmp_path: Path) -> None:
    from ftdiag.export.merge import merge_adapter

    merged = tmp_path / "merged"
    merge_adapter(trained_adapter, str(tiny_llama), merged)
    titles = write_titles(tmp_path / "t.jsonl")
    _pin("ab-test", _json(["ab-test", "--adapter", str(trained_adapter), "--base",
                           str(tiny_llama), "--titles", str(titles), "--merged", str(merged),
                           "--max-new-tokens", "6", "--check-batch"], 0))


def test_loss_report_json_keys(tmp_path: Path) -> None:
    _pin("loss-report", _json(["loss-report", str(write_run(tmp_path / "a"))], 0))
    _pin("loss-report-compare", _json(["loss-report", str(write_run(tmp_path / "b")),
                                       str(write_run(tmp_path / "c", "flat"))], 1))


def test_merge_json_keys(trained_adapter: Path, tiny_llama: Path, tmp_path: Path) -> None:
    _pin("merge", _json(["merge", "--adapter", str(trained_adapter), "--base", str(tiny_llama),
                         "--out", str(tmp_path / "m")], 0))


def test_train_json_keys(tiny_llama: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "trn.json", toy_records(30))
    _pin("train", _json(["train", "--data", str(data), "--base", str(tiny_llama), "--out",
                         str(tmp_path / "run"), "--max-steps", "2", "--max-length", "96"], 0))


def _run_dir(tmp_path: Path, tiny_llama: Path) -> Path:
    run = tiny.train_toy_adapter(tiny_llama, tmp_path / "run", steps=10)
    write_run(run)
    (run / "ftdiag_meta.json").write_text(json.dumps({"base": str(tiny_llama)}))
    write_titles(run / "train_examples.jsonl")
    return run


def test_doctor_json_keys(tiny_llama: Path, tmp_path: Path) -> None:
    run = _run_dir(tmp_path, tiny_llama)
    _pin("doctor", _json(["doctor", str(run), "--n", "2", "--max-new-tokens", "4"], 0))


def test_doctor_static_failure_json_keys(tiny_llama: Path, tmp_path: Path) -> None:
    run = _run_dir(tmp_path, tiny_llama)
    (run / "adapter_model.safetensors").write_bytes(b"")
    _pin("doctor-static-fail", _json(["doctor", str(run)], 1))


def test_a_schema_sees_keys_types_and_rows() -> None:
    pinned = schema({"a": {"b": 1}, "rows": [{"x": 1.5, "y": "s"}, {"x": None, "y": "t"}],
                     "evidence": {"free": 1}})
    assert pinned["rows"] == [{"x": "float|null", "y": "str"}]
    ok = {"a": {"b": 2}, "rows": [{"x": None, "y": ""}], "evidence": {"other": [1]}}
    assert conforms(ok, pinned) == []
    assert conforms({**ok, "a": {"c": 1}}, pinned) == ["$.a.b: missing", "$.a.c: not in the schema"]
    assert conforms({**ok, "a": {"b": "1"}}, pinned) == ["$.a.b: str, expected int"]
    assert conforms({**ok, "rows": [{"x": 1.0, "y": "s"}, {"x": 1.0}]}, pinned) == [
        "$.rows[1].y: missing"]
    assert conforms({**ok, "rows": [{"x": 1, "y": "s"}]}, pinned) == [
        "$.rows[0].x: int, expected float|null"]


def test_a_key_some_rows_lack_is_pinned_as_optional() -> None:
    pinned = schema({"rows": [{"x": 1, "label": "a"}, {"x": 2}]})
    assert pinned == {"rows": [{"label?": "str", "x": "int"}]}
    assert conforms({"rows": [{"x": 3}]}, pinned) == []
    assert conforms({"rows": [{"x": 3, "label": 1}]}, pinned) == [
        "$.rows[0].label: int, expected str"]


def test_check_export_json_keys(trained_adapter: Path, tiny_llama: Path, tmp_path: Path) -> None:
    from _export_fixtures import merge_to

    merged = merge_to(tiny_llama, trained_adapter, tmp_path / "merged")
    (tmp_path / "Modelfile").write_text("FROM ./merged\n")
    _pin("check-export", _json(["check-export", str(merged), "--adapter", str(trained_adapter),
                                "--base", str(tiny_llama), "--modelfile",
                                str(tmp_path / "Modelfile")], 0))


def test_check_export_lora_gguf_json_keys(trained_adapter: Path, tiny_llama: Path,
                                          tmp_path: Path) -> None:
    from _export_fixtures import write_lora_gguf

    lora = write_lora_gguf(trained_adapter, tiny_llama, tmp_path / "lora.gguf")
    _pin("check-export-lora-gguf", _json(["check-export", str(lora), "--adapter",
                                          str(trained_adapter), "--base", str(tiny_llama)], 0))
