"""With --json, a bad input (exit 2) still prints one JSON document, and one line on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftdiag.cli.app import app

runner = CliRunner()


@pytest.mark.parametrize("args", [
    ["check-adapter", "{missing}"],
    ["ab-test", "--adapter", "{missing}", "--titles", "{missing}"],
    ["doctor", "{missing}"],
    ["loss-report", "{missing}"],
    ["merge", "--adapter", "{missing}", "--out", "{tmp}/out"],
])
def test_user_error_prints_an_error_document(args: list[str], tmp_path: Path) -> None:
    argv = [a.format(missing=tmp_path / "nope", tmp=tmp_path) for a in args] + ["--json"]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["tool"] == "ftdiag" and doc["verdict"] == "error" and doc["command"] == args[0]
    assert doc["error"]["message"] and "hint" in doc["error"]
    assert len(result.stderr.strip().splitlines()) == 1 and "error:" in result.stderr


def test_usage_error_prints_an_error_document_too() -> None:
    result = runner.invoke(app, ["check-adapter", "--json", "--no-such-option"])
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["verdict"] == "error" and "--no-such-option" in doc["error"]["message"]


def test_without_json_stdout_stays_empty(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check-adapter", str(tmp_path / "nope")])
    assert result.exit_code == 2 and result.stdout == ""
