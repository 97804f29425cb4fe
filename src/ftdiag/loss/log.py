"""`LossLog`: the loss curves of one run, and how dict records become one.

Shared by ftdiag.loss.read (the readers it dispatches to) and ftdiag.loss.sources (the readers
of other trackers), which both build on it: a leaf below both, so neither imports the other back.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from pathlib import Path
from typing import Any, overload

import numpy as np

from ftdiag.safeio import json_lines

Series = Sequence[tuple[int, float]]  # a list, or an ArraySeries from a reader


class ArraySeries(Sequence[tuple[int, float]]):
    """(step, value) pairs held as two numpy arrays: what readers store, and what the analysis
    reads back, without building 100k tuples in between (a third of loss-report's time)."""

    def __init__(self, steps: np.ndarray, values: np.ndarray) -> None:
        self.steps = np.asarray(steps, dtype=np.int64)
        self.values = np.asarray(values, dtype=np.float64)

    def __len__(self) -> int:
        return int(self.steps.size)

    @overload
    def __getitem__(self, i: int) -> tuple[int, float]: ...

    @overload
    def __getitem__(self, i: slice) -> list[tuple[int, float]]: ...

    def __getitem__(self, i: int | slice) -> tuple[int, float] | list[tuple[int, float]]:
        if isinstance(i, slice):
            return list(zip(self.steps[i].tolist(), self.values[i].tolist(), strict=True))
        return int(self.steps[i]), float(self.values[i])

    def __iter__(self) -> Iterator[tuple[int, float]]:
        return zip(self.steps.tolist(), self.values.tolist(), strict=True)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ArraySeries({list(self)!r})" if len(self) <= 6 else \
            f"ArraySeries(<{len(self)} points, steps {self.steps[0]}..{self.steps[-1]}>)"


@dataclass
class LossLog:
    """Loss curves of one run, whatever file they came from (series are (step, value), sorted)."""

    source: str
    format: str = "none"  # trainer_state|tensorboard|csv|jsonl|llamafactory|wandb|mlflow|none
    train: Series = field(default_factory=list)
    eval: Series = field(default_factory=list)
    grad_norm: Series = field(default_factory=list)
    learning_rate: Series = field(default_factory=list)
    epoch: Series = field(default_factory=list)
    tokens_seen: int | None = None
    global_step: int | None = None
    max_steps: int | None = None
    num_train_epochs: float | None = None
    duplicates_merged: int = 0
    was_unsorted: bool = False
    notes: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # logsources.runconfig.KEYS found
    label: str | None = None  # a name for runs that have no path (MLflow)

    @property
    def steps_done(self) -> int:
        """Optimizer steps the run reached (global_step, else the last logged step)."""
        last = max((s for series in (self.train, self.eval) for s, _ in series[-1:]), default=0)
        return max(self.global_step or 0, last)


def from_records(source: str, fmt: str, records: list[dict[str, Any]], step_col: str,
                  loss_col: str, eval_col: str) -> LossLog:
    """Build a LossLog from dict records (trainer log_history or exported rows), vectorised."""
    out = LossLog(source, fmt)
    n = len(records)
    has, values = column(records, step_col)
    steps = np.arange(n, dtype=np.float64)  # no step: the row number (also for NaN, 1e300)
    steps[has] = np.where(np.isfinite(values) & (np.abs(values) < 2.0**62), values, steps[has])
    steps = steps.astype(np.int64)
    columns = {"train": loss_col, "eval": eval_col, "grad_norm": "grad_norm",
               "learning_rate": "learning_rate", "epoch": "epoch",
               "tokens": "num_input_tokens_seen"}
    for key, col in columns.items():
        has, values = column(records, col)
        if values.size:
            assign_series(out, key, steps[has], values)
    if n and steps.size > 1 and np.any(np.diff(steps) < 0):
        out.was_unsorted = True
    out.global_step = int(steps.max()) if n else None
    return out


def column(records: list[dict[str, Any]], col: str) -> tuple[np.ndarray, np.ndarray]:
    """(mask of records holding `col` not null, its values as float64; non-numbers NaN).

    Runs in C (map over dict methods) when every value present is a number: 100k records
    in a few ms.
    """
    n = len(records)
    has = np.fromiter(map(dict.__contains__, records, repeat(col)), dtype=bool, count=n)
    try:
        values = np.fromiter(map(dict.__getitem__, compress(records, has.tolist()), repeat(col)),
                             dtype=np.float64, count=int(has.sum()))
        nan_at = np.flatnonzero(np.isnan(values))
        if nan_at.size:  # numpy reads null as NaN: null means absent, a logged NaN stays
            rows = np.flatnonzero(has)[nan_at]
            null = np.array([records[i][col] is None for i in rows.tolist()], dtype=bool)
            if null.any():
                has[rows[null]] = False
                values = np.delete(values, nan_at[null])
        return has, values
    except (TypeError, ValueError, OverflowError):  # null, strings, lists, 10**400: one by one
        pass
    raw = [r.get(col) for r in records]
    has = np.fromiter((v is not None for v in raw), dtype=bool, count=n)
    return has, _floats([v for v in raw if v is not None])


def assign_series(out: LossLog, key: str, steps: np.ndarray, values: np.ndarray) -> None:
    """Sort by step, keep the last occurrence of each step, store on `out`."""
    if steps.size == 0:
        return
    if steps.size > 1 and np.any(steps[1:] < steps[:-1]):
        out.was_unsorted = True
    if steps.size < 2 or bool(np.all(steps[1:] > steps[:-1])):  # the usual case: no sort
        uniq, kept = steps, values
    else:
        uniq, first_in_rev = np.unique(steps[::-1], return_index=True)
        kept = values[::-1][first_in_rev]
    if key in ("train", "eval"):
        out.duplicates_merged += int(steps.size - uniq.size)
    if key == "tokens":
        finite = kept[np.isfinite(kept)]
        out.tokens_seen = int(finite[-1]) if finite.size else None
        return
    setattr(out, key, ArraySeries(uniq, kept))


def _floats(values: list[Any]) -> np.ndarray:
    """Values as float64 (None and non-numbers become NaN), vectorised when the input allows."""
    try:
        out = np.array(values, dtype=np.float64)  # None -> nan
        if out.shape == (len(values),):  # not [[]] read as a 1x0 matrix
            return out
    except (TypeError, ValueError, OverflowError):
        pass
    return np.array([_num(v) for v in values], dtype=np.float64)


def _num(value: Any, default: float = math.nan) -> float:
    if isinstance(value, bool) or value is None:
        return default
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer past 1e308
        return default


def jsonl_objects(path: Path, hint: str) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL file, blank lines and non-objects skipped; bad JSON, a line
    or file too long, or a nesting too deep: one error naming the line."""
    for _, rec in json_lines(path, hint):
        if isinstance(rec, dict):
            yield rec
