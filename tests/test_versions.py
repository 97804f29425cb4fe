"""A too-old torch, transformers or peft is one line at start-up; the floors agree everywhere."""

from __future__ import annotations

import json
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftdiag.cli._versions import MINIMUM, release
from ftdiag.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _installed_as(monkeypatch: pytest.MonkeyPatch, name: str, version: str | None) -> None:
    real = metadata.version

    def fake(dist: str) -> str:
        if dist != name:
            return real(dist)
        if version is None:
            raise metadata.PackageNotFoundError(dist)
        return version

    monkeypatch.setattr(metadata, "version", fake)


@pytest.mark.parametrize("name", sorted(MINIMUM))
def test_too_old_package_is_one_line_naming_it_and_the_floor(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    _installed_as(monkeypatch, name, "0.0.1")
    res = runner.invoke(app, ["check-adapter", str(tmp_path)], env={"COLUMNS": "300"})
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert f"{name} 0.0.1 is too old" in lines[0] and f"{name} >= {MINIMUM[name]}" in lines[0]
    assert "Traceback" not in res.output


def test_missing_package_says_so_and_json_gets_the_error_document(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _installed_as(monkeypatch, "peft", None)
    res = runner.invoke(app, ["check-adapter", str(tmp_path), "--json"])
    assert res.exit_code == 2
    doc = json.loads(res.stdout)
    assert "peft is not installed" in json.dumps(doc)


def test_local_and_dev_builds_compare_by_their_release() -> None:
    assert release("2.13.0+cpu") == (2, 13, 0)
    assert release("5.3.0rc1") >= release(MINIMUM["transformers"])
    assert release("0.18.0.dev0") >= release(MINIMUM["peft"])
    assert release("4.57.0") < release(MINIMUM["transformers"])


def test_version_and_help_need_no_check(monkeypatch: pytest.MonkeyPatch) -> None:
    _installed_as(monkeypatch, "torch", "1.0")
    assert runner.invoke(app, ["--version"]).exit_code == 0


def _floors_in_pyproject() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for dep in deps:
        match = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", dep)
        assert match, f"{dep}: every runtime dependency is a range with a floor"
        floors[match[1].lower().replace("_", "-")] = match[2]
    return floors


def _pins_in_constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints" / "lowest.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_lowest_constraints_pin_each_declared_floor() -> None:
    floors = _floors_in_pyproject()
    assert _pins_in_constraints() == floors
    for name, floor in MINIMUM.items():
        assert release(floors[name]) == release(floor), name
