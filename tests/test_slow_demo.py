"""`ftdiag demo --fast` end to end on the embedded model: trains, diagnoses, catches the bug."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftdiag.cli.app import app


@pytest.mark.slow
def test_fast_demo_trains_diagnoses_and_flags_the_in_place_bug(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--fast", "--workdir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["command"] == "demo" and doc["verdict"] == "pass"
    assert doc["details"]["doctor_verdict"] in ("pass", "warn")
    assert {"R004", "B001"} <= set(doc["details"]["in_place_bug_codes"])
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()
    assert "Success criteria" in (tmp_path / "doctor-report.html").read_text()
