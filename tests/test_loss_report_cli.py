"""`ftdiag loss-report` through the real CLI: verdicts, JSON, PNG, comparisons, bad input."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from _loss_helpers import curve, eval_curve, history, write_run, write_state
from rich.console import Console
from typer.testing import CliRunner

from ftdiag.cli.app import app
from ftdiag.loss.analysis import loss_report
from ftdiag.render.loss_report import plot_text, print_loss_report

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, ["loss-report", *args])
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), \
        res.exception
    return res.exit_code, res.stdout, res.stderr


def test_healthy_run_passes_with_a_summary(tmp_path: Path) -> None:
    code, out, _ = run(str(write_run(tmp_path / "good")))
    assert code == 0
    assert "loss report: good" in out and "verdict: PASS" in out and "decrease" in out


def test_json_round_trips(tmp_path: Path) -> None:
    code, out, _ = run(str(write_run(tmp_path / "flat", "flat")), "--json")
    doc = json.loads(out)
    assert code == 1 and doc["command"] == "loss-report" and doc["verdict"] == "fail"
    assert "L002" in {f["code"] for f in doc["findings"]}
    for key in ("start_loss", "end_loss", "min_loss", "relative_decrease", "steps"):
        assert key in doc["details"]
    assert len(doc["details"]["curves"]["train"]) == 200


def test_strict_turns_warnings_into_exit_1(tmp_path: Path) -> None:
    path = str(write_run(tmp_path / "short", n=30))
    assert run(path)[0] == 0
    assert run(path, "--strict")[0] == 1
    assert run(path, "--strict", "--min-steps", "10")[0] == 0


def test_png_is_written(tmp_path: Path) -> None:
    png = tmp_path / "plots" / "loss.png"
    code, _, _ = run(str(write_run(tmp_path / "good")), "--png", str(png))
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in png.parent.iterdir() if p.name != "loss.png"]  # no temp files left


def test_png_without_matplotlib_says_how_to_install(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = run(str(write_run(tmp_path / "good")), "--png", str(tmp_path / "x.png"))
    assert code == 2 and "pip install matplotlib" in err and not (tmp_path / "x.png").exists()


def test_png_into_a_directory_is_a_user_error(tmp_path: Path) -> None:
    code, out, err = run(str(write_run(tmp_path / "good")), "--png", str(tmp_path))
    assert code == 2 and "cannot write" in err and "Traceback" not in out + err


def test_two_runs_one_comparison_table_with_the_best_marked(tmp_path: Path) -> None:
    a = write_run(tmp_path / "lr-1e-4")
    b = tmp_path / "lr-2e-4"
    write_state(b, history(curve("healthy") + 0.4, [(s, v + 0.4) for s, v in eval_curve("ok")]))
    code, out, _ = run(str(b), str(a), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["details"]["best_run"] == "lr-1e-4"
    assert [r["label"] for r in doc["details"]["runs"]] == ["lr-2e-4", "lr-1e-4"]
    code, out, _ = run(str(b), str(a))
    assert "loss comparison" in out and "★ lr-1e-4" in out and "★ lr-2e-4" not in out


def test_csv_with_custom_loss_column(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    rows = "\n".join(f"{s},{3 - s / 40:.4f}" for s in range(1, 81))
    path.write_text(f"it,train/loss\n{rows}\n")
    code, out, _ = run(str(path), "--step-col", "it", "--loss-col", "train/loss", "--json")
    doc = json.loads(out)
    assert doc["details"]["steps"] == 80 and doc["details"]["relative_decrease"] > 0.5
    assert {f["code"] for f in doc["findings"]} == {"L008"} and code == 0


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("missing", None, "no such file"),
    ("trainer_state.json", '{"log_history": [{"loss": 1.0, "st', "invalid JSON"),
    ("m.csv", "step,acc\n1,0.5\n", "columns found: step, acc"),
    ("log.jsonl", '{"loss": 1}\nnot json\n', "log.jsonl:2"),
])
def test_bad_input_is_one_line_exit_2(tmp_path: Path, name: str, content: str | None,
                                      needle: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    code, out, err = run(str(path))
    assert code == 2 and needle in err and "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:")


def test_empty_log_history_is_l001_exit_1(tmp_path: Path) -> None:
    code, out, _ = run(str(write_state(tmp_path, [])))
    assert code == 1 and "L001" in out and "verdict: FAIL" in out


def test_plot_is_drawn_on_a_wide_terminal_only(tmp_path: Path) -> None:
    rep = loss_report([write_run(tmp_path / "good")])

    def shown(width: int, terminal: bool) -> str:
        console = Console(width=width, force_terminal=terminal, record=True, file=io.StringIO())
        print_loss_report(rep, console)
        return console.export_text()

    wide = shown(100, True)
    assert "train (smoothed)" in wide and "eval" in wide and "┤" in wide
    assert "train (smoothed)" not in shown(50, True)
    assert "train (smoothed)" not in shown(100, False)


def test_plot_text_has_one_legend_entry_per_curve() -> None:
    text = plot_text([("a", [1, 2, 3], [3.0, 2.0, 1.0]), ("b", [1, 2, 3], [3.0, 2.5, 2.0])],
                     80, 15)
    assert " a" in text and " b" in text and len(text.splitlines()) >= 15
