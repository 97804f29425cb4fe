"""Time `loss-report` on a 100,000-entry trainer_state.json, and `ftdiag --help` (start-up).

Targets: the CLI `--json` end to end under 0.5 s, `ftdiag --help` under 0.3 s. Prints the
library time (read + analyse, best of 3), the CLI times in fresh processes (best of 5:
interpreter start and imports included), where start-up goes (fresh processes that only
import), each with its ratio to its target, and the load average while it ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ENTRIES = 100_000
EVAL_EVERY = 500
TARGET_S = 0.5
HELP_TARGET_S = 0.3
REPEATS = 5


def make_state(path: Path, entries: int = ENTRIES) -> Path:
    """A Trainer-like trainer_state.json with `entries` log records (train + eval)."""
    rng = np.random.default_rng(0)
    n_eval = entries // (EVAL_EVERY + 1)
    n_train = entries - n_eval
    s = np.arange(1, n_train + 1)
    loss = 2.5 * np.exp(-s / (n_train / 5)) + 0.8 + rng.normal(0, 0.05, n_train)
    lr = 2e-4 * np.minimum(s / 1000, 1) * 0.5 * (1 + np.cos(np.pi * s / n_train))
    rows = []
    for i in range(n_train):
        step = i + 1
        rows.append({"epoch": step / 10_000, "grad_norm": 1.0, "learning_rate": float(lr[i]),
                     "loss": float(loss[i]), "step": step})
        if step % EVAL_EVERY == 0 and len(rows) < entries:
            rows.append({"epoch": step / 10_000, "eval_loss": float(loss[i]) + 0.1,
                         "eval_runtime": 1.0, "step": step})
    state = {"global_step": n_train, "max_steps": n_train, "num_train_epochs": 10,
             "log_history": rows[:entries]}
    path.write_text(json.dumps(state))
    return path


def time_library(path: Path, repeats: int = 3) -> float:
    from ftdiag.loss.analysis import loss_report

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        report = loss_report([path])
        best = min(best, time.perf_counter() - t0)
    assert report.details.records > 0
    return best


def time_cli(*args: str, env: dict[str, str] | None = None) -> float:
    """Best of REPEATS wall times of `python -m ftdiag ARGS` in a fresh process."""
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "ftdiag", *args], capture_output=True,
                              text=True, check=False, env=env)
        best = min(best, time.perf_counter() - t0)
    if "--json" in args:
        json.loads(proc.stdout)  # a real report came back
    return best


def time_import(code: str) -> float:
    """Best of REPEATS fresh processes running `code` (to separate start-up from our work)."""
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at start")
    with tempfile.TemporaryDirectory() as tmp:
        path = make_state(Path(tmp) / "trainer_state.json")
        size = path.stat().st_size / 1e6
        print(f"trainer_state.json: {ENTRIES:,} log entries, {size:.1f} MB")
        lib = time_library(path)
        print(f"library read+analyse: {lib:.3f} s")
        cli = time_cli("loss-report", str(path), "--json")
        print(f"CLI loss-report --json end to end (fresh process, best of {REPEATS}): {cli:.3f} s"
              f"  ratio to {TARGET_S:g} s target: {cli / TARGET_S:.2f}")
    helps = time_cli("--help")
    print(f"ftdiag --help (fresh process, best of {REPEATS}): {helps:.3f} s  ratio to "
          f"{HELP_TARGET_S:g} s target: {helps / HELP_TARGET_S:.2f}")
    plain = time_cli("--help", env={**os.environ, "TYPER_USE_RICH": "0"})
    print(f"  the same with Typer's plain (non-Rich) help, TYPER_USE_RICH=0: {plain:.3f} s")
    print("start-up, fresh processes that only import (best of 5):")
    rows = [("python", "pass"), ("import ftdiag.cli.app (typer + command modules)",
                                 "import ftdiag.cli.app"),
            ("+ numpy (the analysis)", "import ftdiag.cli.app, numpy"),
            ("+ rich.console (terminal output, not --json)",
             "import ftdiag.cli.app, numpy, rich.console")]
    for label, code in rows:
        print(f"  {label:58} {time_import(code):.3f} s")
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end")


if __name__ == "__main__":
    main()
