"""Where the time went: ab-test and doctor say it in --json (details.timing) and in the terminal.

No test asserts a time: only that every part is there, none is negative, and together they fit
in the wall time.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _ab_helpers import write_titles
from typer.testing import CliRunner

from ftdiag import timing
from ftdiag.cli.app import app

runner = CliRunner()


def _check_parts(doc: dict) -> dict:
    t = doc["details"]["timing"]
    parts = t["parts_s"]
    assert set(parts) == set(timing.PARTS)
    assert all(v >= 0 for v in parts.values()) and t["other_s"] >= 0
    assert sum(parts.values()) <= t["wall_s"] + 1e-3  # rounding to 0.1 ms per part
    return parts


def test_ab_test_json_says_where_the_time_went(tiny_llama: Path, trained_adapter: Path,
                                               tmp_path: Path) -> None:
    titles = write_titles(tmp_path / "t.jsonl")  # with references: the NLL part runs too
    res = runner.invoke(app, ["ab-test", "--adapter", str(trained_adapter), "--base",
                              str(tiny_llama), "--titles", str(titles), "--max-new-tokens", "4",
                              "--json"])
    assert res.exit_code == 0, res.stderr
    parts = _check_parts(json.loads(res.stdout))
    for ran in ("static_checks", "load", "runtime_checks", "r004_guard", "prefill", "decode",
                "reference_nll", "render"):
        assert parts[ran] > 0, ran


def test_ab_test_terminal_prints_the_time_line(tiny_llama: Path, trained_adapter: Path,
                                               tmp_path: Path) -> None:
    titles = write_titles(tmp_path / "t.txt", with_refs=False)
    res = runner.invoke(app, ["ab-test", "--adapter", str(trained_adapter), "--base",
                              str(tiny_llama), "--titles", str(titles), "--max-new-tokens", "3"])
    assert res.exit_code == 0, res.stderr
    line = next(x for x in res.stdout.splitlines() if x.startswith("time: "))
    assert "since command start" in line and "decode" in line and "other" in line


def test_doctor_json_says_where_the_time_went(tiny_llama: Path, trained_adapter: Path,
                                              tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_adapter, run)
    (run / "ftdiag_meta.json").write_text(json.dumps({"base": str(tiny_llama)}))
    titles = write_titles(tmp_path / "t.jsonl")
    res = runner.invoke(app, ["doctor", str(run), "--titles", str(titles), "--max-new-tokens",
                              "4", "--json"])
    doc = json.loads(res.stdout)
    parts = _check_parts(doc)
    assert parts["load"] > 0 and parts["decode"] > 0


def test_inner_phases_are_counted_once() -> None:
    clock = timing.start()
    with timing.phase("runtime_checks"), timing.phase("r004_guard"):
        pass
    snap = clock.snapshot()
    assert snap["since"] == "command start"
    assert sum(snap["parts_s"].values()) <= snap["wall_s"] + 1e-3


def test_phases_cost_nothing_without_a_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing, "_CLOCK", None)
    with timing.phase("decode"):
        pass
    assert timing.current() is None


def test_process_age_is_known_on_linux() -> None:
    age = timing.process_age()
    assert age is None or age >= 0
