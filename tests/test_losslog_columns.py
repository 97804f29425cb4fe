"""from_records' fast column path: same series as the element-wise reading, kept as arrays."""

from __future__ import annotations

import math

import numpy as np

from ftdiag.loss.log import ArraySeries, column, from_records


def _pairs(series: object) -> list[tuple[int, float]]:
    return [(s, v) for s, v in series]  # type: ignore[attr-defined]


def test_column_tells_absent_from_logged_nan() -> None:
    records = [{"loss": 1.0}, {}, {"loss": math.nan}, {"loss": None}, {"loss": 3}]
    has, values = column(records, "loss")
    assert has.tolist() == [True, False, True, False, True]  # null counts as absent
    assert values[0] == 1.0 and math.isnan(values[1]) and values[2] == 3.0


def test_column_falls_back_for_non_numbers() -> None:
    has, values = column([{"loss": "2.5"}, {"loss": "n/a"}, {"step": 1}], "loss")
    assert has.tolist() == [True, True, False]
    assert values[0] == 2.5 and math.isnan(values[1])


def test_from_records_series_equal_plain_lists() -> None:
    records = [{"step": 3, "loss": 0.5}, {"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.7},
               {"step": 2, "loss": 0.6}, {"step": 4, "eval_loss": 0.9}, {"loss": 0.4}]
    log = from_records("x", "jsonl", records, "step", "loss", "eval_loss")
    assert isinstance(log.train, ArraySeries)
    # unsorted and a duplicated step: sorted, the last write of step 2 wins; no step: row 5
    assert log.train == [(1, 1.0), (2, 0.6), (3, 0.5), (5, 0.4)]
    assert log.was_unsorted and log.duplicates_merged == 1
    assert log.eval == [(4, 0.9)] and log.eval[-1] == (4, 0.9) and log.eval[-1:] == [(4, 0.9)]
    assert _pairs(log.train)[0] == (1, 1.0) and len(log.train) == 4
    assert log.steps_done == 5 and not log.grad_norm


def test_array_series_is_a_read_only_view_for_the_analysis() -> None:
    from ftdiag.loss.analysis import _arrays

    series = ArraySeries(np.array([1, 2]), np.array([0.5, 0.25]))
    steps, values = _arrays(series)
    steps[0] = 99  # the analysis may work in place: the log keeps its numbers
    assert series == [(1, 0.5), (2, 0.25)] and values.dtype == np.float64
    assert series != [(1, 0.5)] and "ArraySeries" in repr(series)
