"""The captured outputs the docs show, re-run from the current code (`make docs`).

Each capture is one ftdiag command on tiny random fixtures built here (no download, seconds),
run as a user runs it (`python -m ftdiag`, 100 columns, no colour). `make docs` writes them to
docs/captures/NAME.txt, which the pages include; tests/test_docs_captures.py re-runs them and
fails when the stable parts (exit code, verdict, each row's mark, code and label) differ from
the file. Timings, paths and numbers may change without a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CAPTURES_DIR = Path(__file__).resolve().parents[1] / "docs" / "captures"
DOCS_WORK = Path("/tmp/ftdiag-docs")  # where `make docs` builds the fixtures the pages show
WORK = "WORK"  # the fixture folder in a capture's arguments
TITLES = ["Stainless steel water bottle", "Wireless bluetooth headphones"]


@dataclass(frozen=True)
class Capture:
    """One command the docs show: its name (the file), its arguments, and its exit code."""

    name: str
    args: list[str]
    exit_code: int


def fixtures(work: Path) -> list[Capture]:
    """Build the fixtures in `work` (a tiny Llama, a trained and an untrained adapter, a flat
    loss log) and return the captures that use them."""
    from ftdiag.testing.tiny import save_base, save_random_adapter, train_toy_adapter

    base = save_base(work / "base")
    train_toy_adapter(base, work / "adapter", steps=20)
    save_random_adapter(base, work / "untrained", target_modules=["q_proj", "v_proj"], b_std=0.0)
    (work / "titles.json").write_text(json.dumps([{"title": t} for t in TITLES]))
    flat = work / "flat-run"
    flat.mkdir()
    log = [{"step": s, "loss": 2.0 - 0.001 * s, "learning_rate": 1e-4} for s in range(1, 81)]
    (flat / "trainer_state.json").write_text(json.dumps({"global_step": 80, "log_history": log}))
    return [
        Capture("check-adapter-untrained", ["check-adapter", "WORK/untrained", "--base",
                                            "WORK/base", "--static-only"], 1),
        Capture("check-adapter", ["check-adapter", "WORK/adapter", "--base", "WORK/base"], 0),
        Capture("ab-test", ["ab-test", "--adapter", "WORK/adapter", "--base", "WORK/base",
                            "--titles", "WORK/titles.json", "--max-new-tokens", "8"], 0),
        Capture("loss-report-flat", ["loss-report", "WORK/flat-run"], 1),
        Capture("merge", ["merge", "--adapter", "WORK/adapter", "--base", "WORK/base", "--out",
                          "WORK/merged"], 0),
        Capture("check-export", ["check-export", "WORK/merged", "--adapter", "WORK/adapter",
                                 "--base", "WORK/base"], 0),
    ]


def run(capture: Capture, work: Path) -> tuple[int, str]:
    """(exit code, the command line and its output) of one capture on the fixtures in `work`."""
    args = [str(work / a[len(WORK) + 1:]) if a.startswith(WORK + "/") else a
            for a in capture.args]
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb",
           "FTDIAG_CACHE": str(work / "cache")}
    done = subprocess.run([sys.executable, "-m", "ftdiag", *args], capture_output=True,
                          text=True, env=env, timeout=600)
    shown = " ".join(a.replace(WORK, str(work), 1) for a in capture.args)
    return done.returncode, f"$ ftdiag {shown}\n{(done.stdout + done.stderr).rstrip()}\n"


_ROW = re.compile(r"│ (\S) │ ([A-Z]\d{3}) │ (.+?)\s*│")
_VERDICT = re.compile(r"^verdict: \S+", re.M)


def stable(text: str) -> list[str]:
    """What must not change silently: the verdict and each table row's mark, code and label
    (its first line)."""
    rows = [" ".join(m) for line in text.splitlines() for m in _ROW.findall(line)]
    return _VERDICT.findall(text) + rows


def main() -> None:
    """Rebuild the fixtures in DOCS_WORK and rewrite every capture (`make docs`)."""
    CAPTURES_DIR.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(DOCS_WORK, ignore_errors=True)
    DOCS_WORK.mkdir(parents=True)
    for capture in fixtures(DOCS_WORK):
        code, text = run(capture, DOCS_WORK)
        if code != capture.exit_code:
            sys.exit(f"{capture.name}: exit {code}, expected {capture.exit_code}\n{text}")
        (CAPTURES_DIR / f"{capture.name}.txt").write_text(text, encoding="utf-8")
        print(f"wrote docs/captures/{capture.name}.txt (exit {code})")


if __name__ == "__main__":
    main()
