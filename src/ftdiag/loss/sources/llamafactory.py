"""LLaMA-Factory's `trainer_log.jsonl`: one line per Trainer log, written while it trains.

Each line has `current_steps`, `total_steps` and, when logged, `loss`, `eval_loss`, `lr`, `epoch`,
`total_tokens` (LLaMA-Factory's LogCallback drops keys whose value is None). Lines without a loss
(progress lines of a predict-only run) are skipped. Steps are the Trainer's global steps, as
logged (the first is usually 1).
"""

from __future__ import annotations

import math
from pathlib import Path

from ftdiag.loss.log import LossLog, _num, from_records, jsonl_objects

FILE = "trainer_log.jsonl"
_COLUMNS = {"current_steps": "step", "loss": "loss", "eval_loss": "eval_loss",
            "lr": "learning_rate", "epoch": "epoch", "total_tokens": "num_input_tokens_seen"}


def is_trainer_log(path: Path) -> bool:
    """A JSONL file whose first line carries LLaMA-Factory's `current_steps`."""
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            first = fh.readline(4096)
    except OSError:
        return False
    return '"current_steps"' in first and '"total_steps"' in first


def read_trainer_log(path: Path) -> LossLog:
    """Read a LLaMA-Factory trainer_log.jsonl into a LossLog (format "llamafactory")."""
    records = []
    total_steps = None
    for rec in jsonl_objects(path, "truncated while LLaMA-Factory was writing it?"):
        total_steps = rec.get("total_steps", total_steps)
        if "loss" in rec or "eval_loss" in rec:
            records.append({new: rec[old] for old, new in _COLUMNS.items() if old in rec})
    out = from_records(str(path), "llamafactory", records, "step", "loss", "eval_loss")
    steps = _num(total_steps)
    if math.isfinite(steps) and steps >= 1:
        out.max_steps = int(steps)
    return out
