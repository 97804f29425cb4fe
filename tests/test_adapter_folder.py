"""Two adapters in one folder (PEFT saves a named adapter in a subfolder): each is checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _adapter_fixtures import copy_adapter, rewrite, zero_b
from _variants import build_adapter
from typer.testing import CliRunner

from ftdiag.adapters.folder import find_adapters
from ftdiag.cli.app import app

runner = CliRunner()


@pytest.fixture
def two(tiny_llama: Path, tmp_path: Path) -> Path:
    return build_adapter(tiny_llama, tmp_path / "two", "llama", variant="second_adapter")


def test_every_adapter_is_found_but_not_checkpoints(two: Path, trained_adapter: Path) -> None:
    copy_adapter(trained_adapter, two / "checkpoint-10")
    assert find_adapters(two) == [("default", two), ("other", two / "other")]


def test_each_adapter_gets_a_section(two: Path, tiny_llama: Path) -> None:
    res = runner.invoke(app, ["check-adapter", str(two), "--base", str(tiny_llama),
                              "--static-only"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "2 adapters in this folder: 'default', 'other'" in res.stdout
    assert f"adapter 'other' ({two / 'other'})" in res.stdout


def test_a_broken_second_adapter_fails_the_folder(two: Path, tiny_llama: Path) -> None:
    rewrite(two / "other", zero_b)
    res = runner.invoke(app, ["check-adapter", str(two), "--base", str(tiny_llama),
                              "--static-only", "--json"])
    doc = json.loads(res.stdout)
    assert res.exit_code == 1 and doc["verdict"] == "fail"
    assert [a["name"] for a in doc["details"]["adapters"]] == ["default", "other"]
    assert any(f["code"] == "A003" and f["message"].startswith("[other]")
               for f in doc["findings"])
    assert not any(f["message"].startswith("[default]") for f in doc["findings"])


def test_a_folder_holding_only_a_named_adapter_checks_it(two: Path, tiny_llama: Path,
                                                         tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    copy_adapter(two / "other", outer / "other")
    res = runner.invoke(app, ["check-adapter", str(outer), "--base", str(tiny_llama),
                              "--static-only", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["verdict"] == "pass"
