"""Did the training converge? Each failure mode of a loss curve gives its L code, with evidence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _loss_helpers import curve, eval_curve, history, write_run, write_state

from ftdiag.loss.analysis import analyse, guess_lr_schedule, loss_report, rolling_median, trend
from ftdiag.loss.read import LossLog, read_loss_log

PROBLEMS = {"L001", "L002", "L003", "L004", "L005", "L006", "L007", "L010"}


def report_for(tmp_path: Path, kind: str = "healthy", **kw: object) -> object:
    return loss_report([write_run(tmp_path / kind, kind, **kw)])  # type: ignore[arg-type]


def test_healthy_decreasing_log_with_eval_has_no_findings(tmp_path: Path) -> None:
    rep = report_for(tmp_path)
    assert rep.codes() == set() and rep.verdict == "pass"
    assert {c.code for c in rep.checks} == PROBLEMS | {"L008"}  # every check ran and passed
    d = rep.details
    assert d.start_loss > 2.5 and d.end_loss < 1.0 and d.relative_decrease > 0.6
    assert d.steps == 200 and d.records == 200 and d.eval["records"] == 10
    assert len(d.eval["gap"]) == 10 and abs(d.eval["gap_last"]) < 0.2


@pytest.mark.parametrize(("kind", "kw", "code"), [
    ("flat", {}, "L002"),
    ("diverging", {}, "L003"),
    ("spike", {}, "L003"),
    ("nan", {}, "L004"),
    ("healthy", {"eval_kind": "overfitting"}, "L005"),
    ("healthy", {"n": 30}, "L006"),
    ("zero", {}, "L007"),
    ("healthy", {"with_eval": False}, "L008"),
])
def test_each_failure_mode_gives_its_code(tmp_path: Path, kind: str, kw: dict[str, object],
                                          code: str) -> None:
    rep = report_for(tmp_path, kind, **kw)
    assert code in rep.codes()
    hit = next(f for f in rep.findings if f.code == code)
    assert hit.message and (hit.hint or hit.status == "info")


def test_flat_loss_hint_says_raise_the_learning_rate(tmp_path: Path) -> None:
    rep = report_for(tmp_path, "flat")
    l002 = next(f for f in rep.findings if f.code == "L002")
    assert l002.status == "fail" and "raise the learning rate" in l002.hint
    assert abs(l002.evidence["relative_decrease"]) < 0.05
    assert "L003" not in rep.codes()  # noise alone is not a spike


def test_diverging_loss_reports_the_rise_and_says_lower_lr(tmp_path: Path) -> None:
    rep = report_for(tmp_path, "diverging")
    l003 = next(f for f in rep.findings if f.code == "L003")
    assert "rising over the last third" in l003.message
    assert l003.evidence["last_third"]["t"] > 3 and "lower the learning rate" in l003.hint


def test_spike_is_located_by_step(tmp_path: Path) -> None:
    rep = report_for(tmp_path, "spike")
    l003 = next(f for f in rep.findings if f.code == "L003")
    assert l003.evidence["spike_steps"] == [121]  # index 120 is step 121
    assert "L002" not in rep.codes()


def test_nan_reports_first_step_and_count(tmp_path: Path) -> None:
    l004 = next(f for f in report_for(tmp_path, "nan").findings if f.code == "L004")
    assert l004.evidence["first_step"] == 151 and l004.evidence["loss"] == 50
    assert l004.status == "fail"


def test_overfitting_points_at_the_best_checkpoint(tmp_path: Path) -> None:
    rep = report_for(tmp_path, eval_kind="overfitting")
    l005 = next(f for f in rep.findings if f.code == "L005")
    assert l005.evidence["best_step"] == 80 and "step 80" in l005.hint
    assert l005.evidence["gap_last"] > l005.evidence["gap_first"]
    assert rep.codes() == {"L005"}


def test_too_few_steps_uses_the_threshold(tmp_path: Path) -> None:
    run = write_run(tmp_path / "short", n=30)
    assert "L006" in loss_report([run]).codes()
    assert "L006" not in loss_report([run], min_steps=20).codes()


def test_zero_loss_counts_records(tmp_path: Path) -> None:
    l007 = next(f for f in report_for(tmp_path, "zero").findings if f.code == "L007")
    assert l007.evidence["count"] == 100 and l007.evidence["first_step"] == 101


def test_empty_log_history_is_l001(tmp_path: Path) -> None:
    rep = loss_report([write_state(tmp_path / "empty", [])])
    assert rep.verdict == "fail" and rep.codes() == {"L001"}
    assert "log_history is empty" in rep.findings[0].message
    assert {c.status for c in rep.checks if c.code != "L001"} == {"skip"}
    healthy_keys = set(loss_report([write_run(tmp_path / "ok")]).details.to_dict())
    assert healthy_keys <= set(rep.details.to_dict())  # doctor can read every key, as None
    assert rep.details.start_loss is None and rep.details.steps == 0


def test_run_dir_without_logs_is_l001(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    rep = loss_report([tmp_path / "out"])
    assert rep.codes() == {"L001"} and rep.details.records == 0


def test_only_eval_records_is_l001(tmp_path: Path) -> None:
    rows = [{"eval_loss": 1.0, "step": 10}, {"eval_loss": 0.9, "step": 20}]
    assert "L001" in loss_report([write_state(tmp_path / "ev", rows)]).codes()


def test_multi_run_marks_the_run_with_the_lower_eval_loss(tmp_path: Path) -> None:
    good = write_run(tmp_path / "lr-1e-4")
    worse = tmp_path / "lr-2e-4"
    evals = [(s, v + 0.3) for s, v in eval_curve("ok")]
    write_state(worse, history(curve("healthy") + 0.3, evals))
    rep = loss_report([worse, good])
    assert [r.label for r in rep.details.runs] == ["lr-2e-4", "lr-1e-4"]
    assert rep.details.best_run == "lr-1e-4" and rep.details.best_by == "best eval loss"
    assert all(c.evidence["run"] in ("lr-1e-4", "lr-2e-4") for c in rep.checks)


def test_multi_run_never_picks_a_failing_run(tmp_path: Path) -> None:
    nan = tmp_path / "nan"
    write_state(nan, history(curve("nan") - 0.5))  # lower loss, but NaN and no eval
    ok = write_run(tmp_path / "ok", with_eval=False)
    rep = loss_report([nan, ok])
    assert rep.details.best_by == "end train loss" and rep.details.best_run == "ok"
    assert rep.verdict == "fail" and "L004" in rep.codes()


def test_lr_schedule_guesses() -> None:
    s = np.arange(1, 201)
    warm = np.minimum(s / 20, 1.0)
    x = np.clip((s - 20) / 180, 0, 1)
    assert guess_lr_schedule(s, 2e-4 * warm * 0.5 * (1 + np.cos(np.pi * x)))["kind"] == \
        "warmup + cosine"
    assert guess_lr_schedule(s, 2e-4 * (1 - s / 201))["kind"] == "linear"
    assert guess_lr_schedule(s, np.full(200, 1e-4))["kind"] == "constant"
    assert guess_lr_schedule(s[:0], s[:0].astype(float)) is None


def test_trend_slope_and_stderr_match_numpy() -> None:
    x = np.arange(100.0)
    y = 3 - 0.01 * x + np.random.default_rng(0).normal(0, 0.1, 100)
    t = trend(x, y)
    assert t is not None
    assert t["slope"] == pytest.approx(np.polyfit(x, y, 1)[0])
    assert t["stderr"] < 0.001 and t["t"] < -10


def test_rolling_median_ignores_a_single_outlier() -> None:
    y = np.ones(21)
    y[10] = 50
    assert rolling_median(y, 5).max() == 1.0


def test_analyse_on_a_handmade_log() -> None:
    log = LossLog("mem", "jsonl", train=[(1, 2.0), (2, 1.5), (3, 1.0)], global_step=3)
    rep = analyse(log, min_steps=2)
    assert rep.details.relative_decrease == pytest.approx(0.5)
    assert rep.codes() == {"L008"}


def test_unsorted_duplicate_steps_are_merged_before_analysis(tmp_path: Path) -> None:
    rows = history(curve("healthy"), eval_curve("ok"))
    resumed = [dict(r, loss=r["loss"] + 5) for r in rows[40:60] if "loss" in r]  # older attempt
    path = write_state(tmp_path / "r", resumed + rows[::-1])
    log = read_loss_log(path)
    assert log.was_unsorted and log.duplicates_merged == len(resumed) > 10
    assert [s for s, _ in log.train] == list(range(1, 201))
    assert max(v for _, v in log.train) < 4  # the later (resumed) values won
    assert loss_report([path]).codes() == set()


@pytest.mark.parametrize("seed", range(10))
def test_noisy_batch_size_one_curve_is_not_called_spiky(tmp_path: Path, seed: int) -> None:
    s = np.arange(1, 301)  # ±35% batch-to-batch noise, as with batch size 1
    noisy = (2.0 * np.exp(-s / 100) + 1.0) * np.random.default_rng(seed).lognormal(0, 0.35, 300)
    rep = loss_report([write_state(tmp_path / "bs1", history(noisy, eval_curve("ok", 300)))])
    assert rep.codes() == set()


@pytest.mark.parametrize(("fall", "status"), [(0.02, "fail"), (0.08, "pass")])
def test_l002_needs_a_five_percent_fall(tmp_path: Path, fall: float, status: str) -> None:
    """A steady, clean decline of 2 % is no meaningful decrease; one of 8 % is."""
    s = np.arange(1, 201)
    noise = np.random.default_rng(0).normal(0, 0.001, s.size)
    losses = 2.0 * (1 - fall * (s - 1) / (s.size - 1)) + noise
    rep = loss_report([write_state(tmp_path / "run", history(losses, eval_curve("ok")))])
    l002 = next(c for c in rep.checks if c.code == "L002")
    assert l002.status == status, l002.message
    assert fall * 0.8 < l002.evidence["relative_decrease"] < fall  # start/end are window medians


def test_rising_loss_hint_says_lower_not_raise(tmp_path: Path) -> None:
    s = np.arange(1, 201)
    rep = loss_report([write_state(tmp_path / "up", history(1.0 + s / 100, eval_curve("ok")))])
    l002 = next(f for f in rep.findings if f.code == "L002")
    assert "lower the learning rate" in l002.hint and "raise" not in l002.hint
    assert "L003" in rep.codes()


@pytest.mark.parametrize("seed", range(10))
def test_flat_but_very_noisy_loss_is_still_l002(tmp_path: Path, seed: int) -> None:
    flat = 2.0 * np.random.default_rng(seed).lognormal(0, 0.35, 300)
    rep = loss_report([write_state(tmp_path / "flat", history(flat, eval_curve("ok", 300)))])
    assert "L002" in rep.codes()


def test_all_nan_loss_is_l004_without_a_trend(tmp_path: Path) -> None:
    losses = np.full(60, np.nan)
    rep = loss_report([write_state(tmp_path / "nan", history(losses, eval_curve("ok", 60)))])
    assert "L004" in rep.codes() and rep.details.start_loss is None
    assert next(c for c in rep.checks if c.code == "L002").status == "skip"


def test_run_labels_name_the_run_not_the_file() -> None:
    from ftdiag.loss.analysis import run_labels

    paths = [Path("/x/lr-1/trainer_state.json"), Path("/x/lr-2/checkpoint-40"),
             Path("/x/lr-3/runs/Nov28_host/events.out.tfevents.1.host"), Path("/x/lr-4/runs"),
             Path("/x/wandb.csv"), Path("/y/wandb.csv")]
    assert run_labels(paths) == ["lr-1", "lr-2/checkpoint-40", "lr-3", "lr-4", "wandb#5",
                                 "wandb#6"]


def test_one_finite_record_is_not_judged_for_a_trend() -> None:
    log = LossLog("mem", "csv", train=[(1, 2.0), (2, float("nan"))], global_step=2)
    rep = analyse(log)
    assert next(c for c in rep.checks if c.code == "L002").status == "skip"
    assert {"L004", "L006", "L008"} <= rep.codes()


def test_a_frozen_run_with_zero_grad_norm_is_l010_and_l002_says_why(tmp_path: Path) -> None:
    """trainer_state.json of a run whose optimizer moved nothing: grad_norm 0 on every step."""
    rows = history(curve("flat", 80))
    for row in rows:
        row["grad_norm"] = 0.0
    rep = analyse(read_loss_log(write_state(tmp_path / "frozen", rows)))
    assert {"L002", "L010"} <= rep.codes()
    l010 = next(c for c in rep.checks if c.code == "L010")
    assert l010.status == "fail" and l010.evidence["zero"] == l010.evidence["logged"] == 80
    l002 = next(c for c in rep.checks if c.code == "L002")
    assert l002.hint.startswith("grad_norm is 0 (L010)")


def test_some_zero_grad_norms_are_not_l010(tmp_path: Path) -> None:
    rows = history(curve("healthy", 80))
    for row in rows[::2]:
        row["grad_norm"] = 0.0
    rep = analyse(read_loss_log(write_state(tmp_path / "half", rows)))
    assert "L010" not in rep.codes()
    assert next(c for c in rep.checks if c.code == "L010").status == "pass"


def test_no_grad_norm_logged_skips_l010(tmp_path: Path) -> None:
    rows = [{k: v for k, v in row.items() if k != "grad_norm"}
            for row in history(curve("healthy", 80))]
    rep = analyse(read_loss_log(write_state(tmp_path / "nogn", rows)))
    assert next(c for c in rep.checks if c.code == "L010").status == "skip"
