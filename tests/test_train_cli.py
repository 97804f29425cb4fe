"""`ftdiag train` through the real CLI: bad input is one line and exit 2; a run prints its story."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _train_helpers import toy_records, write_jsonl
from typer.testing import CliRunner

from ftdiag.cli.app import app

runner = CliRunner()


def _invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["train", *args])


def _one_line_error(result, needle: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "trn.json", toy_records(30))


def test_missing_data_file(tmp_path: Path, tiny_llama: Path) -> None:
    r = _invoke("--data", str(tmp_path / "nope.json"), "--base", str(tiny_llama),
                "--out", str(tmp_path / "run"))
    _one_line_error(r, "data file not found")


def test_empty_data_file(tmp_path: Path, tiny_llama: Path) -> None:
    (tmp_path / "e.json").write_text("")
    r = _invoke("--data", str(tmp_path / "e.json"), "--base", str(tiny_llama),
                "--out", str(tmp_path / "run"))
    _one_line_error(r, "empty")


def test_wrong_field_names_list_the_fields(data: Path, tmp_path: Path, tiny_llama: Path) -> None:
    r = _invoke("--data", str(data), "--base", str(tiny_llama), "--out", str(tmp_path / "run"),
                "--title-field", "name")
    _one_line_error(r, "fields found: uid, title, content")


def test_non_utf8_data(tmp_path: Path, tiny_llama: Path) -> None:
    bad = tmp_path / "latin1.json"
    bad.write_bytes('{"title": "caf\xe9", "content": "x"}\n'.encode("latin-1"))
    r = _invoke("--data", str(bad), "--base", str(tiny_llama), "--out", str(tmp_path / "run"))
    _one_line_error(r, "not UTF-8")


def test_non_empty_out_is_protected(data: Path, tmp_path: Path, tiny_llama: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    r = _invoke("--data", str(data), "--base", str(tiny_llama), "--out", str(out))
    _one_line_error(r, "is not empty")
    assert (out / "precious.txt").read_text() == "mine"


def test_template_and_chat_template_exclude_each_other(data: Path, tmp_path: Path,
                                                       tiny_llama: Path) -> None:
    tmpl = tmp_path / "t.txt"
    tmpl.write_text("T: {title}\n")
    r = _invoke("--data", str(data), "--base", str(tiny_llama), "--out", str(tmp_path / "run"),
                "--template", str(tmpl), "--chat-template")
    _one_line_error(r, "exclude each other")


def test_missing_base_model(data: Path, tmp_path: Path) -> None:
    r = _invoke("--data", str(data), "--base", str(tmp_path / "nobase"),
                "--out", str(tmp_path / "run"))
    _one_line_error(r, "base model not found")


def test_bad_hyperparameter(data: Path, tmp_path: Path, tiny_llama: Path) -> None:
    r = _invoke("--data", str(data), "--base", str(tiny_llama), "--out", str(tmp_path / "run"),
                "--lr", "0")
    _one_line_error(r, "--lr must be positive")


def test_a_run_prints_data_table_summary_and_verdict(data: Path, tmp_path: Path,
                                                      tiny_llama: Path) -> None:
    r = _invoke("--data", str(data), "--base", str(tiny_llama), "--out", str(tmp_path / "run"),
                "--records", "500", "--max-steps", "3", "--batch-size", "4", "--lr", "1e-2",
                "--max-length", "96", "--target-modules", "q_proj,v_proj")
    assert r.exit_code == 0, r.output  # warnings only (few steps, small data): exit 0
    out = r.stdout
    assert f"data: {data}\n" in out  # one line, however long the path
    assert "read from file" in out and "dropped: exact duplicate" in out
    assert "more than the 30 records" in out
    assert "training summary" in out and "optimizer steps" in out and "tokens/s" in out
    assert "A003" in out and "verdict:" in out
    meta = json.loads((tmp_path / "run" / "ftdiag_meta.json").read_text())
    assert meta["hyperparameters"]["target_modules"] == ["q_proj", "v_proj"]


def test_json_output(data: Path, tmp_path: Path, tiny_llama: Path) -> None:
    r = _invoke("--data", str(data), "--base", str(tiny_llama), "--out", str(tmp_path / "run"),
                "--max-steps", "2", "--max-length", "96", "--json")
    doc = json.loads(r.stdout)
    assert doc["command"] == "train" and doc["details"]["train"]["steps"] == 2
    assert doc["details"]["data"]["train_size"] + doc["details"]["data"]["eval_size"] == 30
    assert {"D001", "D002", "D003", "D004", "A003", "L009"} <= {c["code"] for c in doc["checks"]}
    assert r.exit_code == (1 if doc["verdict"] == "fail" else 0)
