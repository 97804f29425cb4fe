"""Time `loss-report` on a 100,000-entry trainer_state.json (target: under 1 s).

Prints the library time (read + analyse, best of 3), the CLI `--json` time end to end in a fresh
process (interpreter start and imports included), and each one's ratio to the 1 s target.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ENTRIES = 100_000
EVAL_EVERY = 500
TARGET_S = 1.0


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
    from ftdiag.convergence import loss_report

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        report = loss_report([path])
        best = min(best, time.perf_counter() - t0)
    assert report.details["records"] > 0
    return best


def time_cli(path: Path) -> float:
    cmd = [sys.executable, "-c", "from ftdiag.cli import main; main()", "loss-report",
           str(path), "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    json.loads(proc.stdout)  # a real report came back
    return elapsed


def time_import(module: str) -> float:
    """A fresh process that only imports `module` (to separate start-up cost from our work)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
    return time.perf_counter() - t0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = make_state(Path(tmp) / "trainer_state.json")
        size = path.stat().st_size / 1e6
        print(f"trainer_state.json: {ENTRIES:,} log entries, {size:.1f} MB")
        lib = time_library(path)
        print(f"library read+analyse: {lib:.3f} s  ratio to {TARGET_S:g} s target: "
              f"{lib / TARGET_S:.2f}")
        cli = time_cli(path)
        print(f"CLI --json end to end (fresh process): {cli:.3f} s  ratio to target: "
              f"{cli / TARGET_S:.2f}")
        base = time_import("ftdiag.cli")
        print(f"  of which start-up: python + import ftdiag.cli {base:.3f} s")


if __name__ == "__main__":
    main()
