"""L001-L010 on curves written here, numbers read off the curve: each message and evidence pinned.

Curves are piecewise constant or exactly linear, so the running median equals the curve, the
batch-to-batch noise is 0 (z is None) and start/end are the medians of the first and last tenth,
known by hand. Thresholds are probed on both sides.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ftdiag.findings import Finding, Report
from ftdiag.loss.analysis import (
    _finite_or_inf,
    _relative_noise,
    _relative_residual,
    _sample,
    _span,
    _window,
    analyse,
    best_run,
    guess_lr_schedule,
    loss_report,
    rolling_median,
    run_labels,
    trend,
)
from ftdiag.loss.details import LossRun
from ftdiag.loss.log import LossLog


def log(losses: list[float], *, start: int = 1, **kw: Any) -> LossLog:
    return LossLog("run.jsonl", "jsonl",
                   train=[(start + i, v) for i, v in enumerate(losses)], **kw)


def check(rep: Report, code: str) -> Finding:
    return next(c for c in rep.checks if c.code == code)


def steps(values: list[float], start: int = 1) -> list[tuple[int, float]]:
    return [(start + i, v) for i, v in enumerate(values)]


STEP_DOWN = [2.0] * 15 + [1.0] * 15  # 30 records: start 2 (steps 1-3), end 1 (steps 28-30)


# --- L001 ---

def test_l001_without_records_names_the_source_and_skips_the_rest() -> None:
    rep = analyse(LossLog("run.jsonl", "jsonl", notes=["no 'loss' column"]))
    assert rep.checks[0] == Finding(
        "L001", "fail", "no training loss records in run.jsonl (no 'loss' column)",
        "point at the run's output_dir, trainer_state.json or exported log; set logging_steps so "
        "the Trainer logs the loss", {"source": "run.jsonl", "format": "jsonl"})
    assert [(c.code, c.status, c.message) for c in rep.checks[1:]] == [
        (code, "skip", "no loss records")
        for code in ("L002", "L003", "L004", "L005", "L006", "L007", "L010")]
    assert analyse(LossLog("x", "csv")).checks[0].message == \
        "no training loss records in x (no 'loss' entries)"


def test_l001_passes_with_the_count_and_format() -> None:
    assert check(analyse(log(STEP_DOWN)), "L001") == Finding(
        "L001", "pass", "30 train loss records (jsonl)", "", {"records": 30})


# --- L004 ---

def test_l004_counts_each_series_and_names_the_first_step() -> None:
    nan, inf = float("nan"), float("inf")
    rep = analyse(log([2.0, nan, 1.0, inf, 1.0], eval=[(3, 1.0), (4, nan)],
                      grad_norm=[(1, 1.0), (2, -inf)]))
    assert check(rep, "L004") == Finding(
        "L004", "fail", "NaN/Inf from step 2: 2 in loss, 1 in eval_loss, 1 in grad_norm",
        "lower the learning rate, use bf16 or fp32 instead of fp16, keep max_grad_norm=1.0, "
        "look for empty or all-masked examples",
        {"first_step": 2, "loss": 2, "eval_loss": 1, "grad_norm": 1})
    assert rep.details.nonfinite == {"loss": 2, "eval_loss": 1, "grad_norm": 1, "first_step": 2}


def test_l004_first_step_is_the_earliest_over_every_series() -> None:
    nan = float("nan")
    rep = analyse(log([2.0, 1.5, 1.0], start=5, eval=[(6, 1.0)], grad_norm=[(2, nan)]))
    assert check(rep, "L004").message == "NaN/Inf from step 2: 1 in grad_norm"
    eval_first = analyse(log([2.0, nan], start=5, eval=[(3, nan)]))
    assert check(eval_first, "L004").evidence["first_step"] == 3


def test_l004_passes_counting_every_value() -> None:
    rep = analyse(log([2.0, 1.5, 1.0], eval=[(2, 1.0), (3, 0.9)], grad_norm=[(1, 1.0)]))
    assert check(rep, "L004") == Finding(
        "L004", "pass", "all 6 loss/eval/grad_norm values finite", "",
        {"loss": 0, "eval_loss": 0, "grad_norm": 0})
    assert rep.details.nonfinite == {"loss": 0, "eval_loss": 0, "grad_norm": 0,
                                     "first_step": None}


# --- L010 ---

def grad_norms(zeros: int, total: int) -> list[tuple[int, float]]:
    """Step 1 has a gradient, then `zeros` steps of 0, then the rest non-zero."""
    return [(s, 0.0 if 2 <= s < 2 + zeros else 1.0) for s in range(1, total + 1)]


def test_l010_fails_at_exactly_nine_tenths_zero() -> None:
    rep = analyse(log(STEP_DOWN, grad_norm=grad_norms(9, 10)))
    assert check(rep, "L010") == Finding(
        "L010", "fail", "grad_norm is exactly 0 on 9 of 10 logged steps (first at step 2): the "
        "optimizer moves nothing", "no trainable parameter gets a gradient: check that the LoRA "
        "weights require grad (a frozen or merged adapter, prepare_model_for_kbit_training after "
        "get_peft_model, lr 0) and the labels", {"zero": 9, "logged": 10, "share": 0.9})


def test_l010_passes_below_nine_tenths() -> None:
    assert check(analyse(log(STEP_DOWN, grad_norm=grad_norms(8, 10))), "L010") == Finding(
        "L010", "pass", "grad_norm non-zero on 2 of 10 logged steps", "",
        {"zero": 8, "logged": 10, "share": 0.8})


def test_l010_skips_without_grad_norm() -> None:
    assert check(analyse(log(STEP_DOWN)), "L010") == Finding("L010", "skip",
                                                             "no grad_norm logged")


def test_a_zero_grad_run_that_does_not_decrease_says_why_in_l002() -> None:
    flat = analyse(log([1.0] * 30, grad_norm=grad_norms(30, 30)))
    assert check(flat, "L002").hint.startswith(
        "grad_norm is 0 (L010): the optimizer moved nothing; raise the learning rate")
    falling = analyse(log(STEP_DOWN, grad_norm=grad_norms(30, 30)))
    assert check(falling, "L002").hint == ""


# --- L007 ---

def test_l007_counts_zero_records_and_the_first() -> None:
    rep = analyse(log([1.0, 0.5, 0.0, 0.0, 0.2]))
    assert check(rep, "L007") == Finding(
        "L007", "fail", "loss is exactly 0 in 2 of 5 records (first at step 3)",
        "all labels are masked (-100) or the data is degenerate: check the completion-only "
        "collator / template and truncation", {"count": 2, "first_step": 3})
    assert check(analyse(log(STEP_DOWN)), "L007") == Finding("L007", "pass", "no loss exactly 0")


# --- L002 ---

def test_l002_pass_pins_the_fall_its_spans_and_evidence() -> None:
    rep = analyse(log(STEP_DOWN))
    assert check(rep, "L002") == Finding(
        "L002", "pass", "loss fell 50%: 2 (steps 1–3) → 1 (steps 28–30)", "",
        {"start_loss": 2.0, "end_loss": 1.0, "relative_decrease": 0.5, "min_loss": 1.0,
         "min_loss_step": 16, "decrease_z": None})
    d = rep.details
    assert (d.start_steps, d.end_steps, d.finite_records, d.noise) == ([1, 3], [28, 30], 30, 0.0)


def test_l002_tenth_is_at_most_fifty_records() -> None:
    d = analyse(log([2.0] * 300 + [1.0] * 700)).details
    assert (d.start_steps, d.end_steps) == ([1, 50], [951, 1000])
    assert (d.start_loss, d.end_loss) == (2.0, 1.0)


def test_l002_one_record_per_end_below_twenty_records() -> None:
    d = analyse(log([3.0, 2.0, 2.0, 2.0, 1.0])).details
    assert (d.start_steps, d.end_steps, d.start_loss, d.end_loss) == ([1, 1], [5, 5], 3.0, 1.0)
    assert check(analyse(log([3.0, 2.0, 2.0, 2.0, 1.0])), "L002").message \
        == "loss fell 67%: 3 (steps 1) → 1 (steps 5)"


def test_l002_says_the_loss_is_still_falling_over_the_last_third() -> None:
    line = [2.0 - 0.02 * s for s in range(1, 31)]  # 1.98 … 1.40, exactly linear
    assert check(analyse(log(line)), "L002").message == (
        "loss fell 28%: 1.96 (steps 1–3) → 1.42 (steps 28–30); still falling 12% over the last "
        "third: more steps may help")


def test_l002_passes_at_five_percent_and_fails_just_below() -> None:
    at = analyse(log([1.0] * 15 + [0.95] * 15))
    assert check(at, "L002").status == "pass"
    below = check(analyse(log([1.0] * 15 + [0.951] * 15)), "L002")
    assert (below.status, below.message) == (
        "fail", "no meaningful decrease (fell 4.9%; needs ≥ 5% beyond the noise): 1 (steps 1–3) "
        "→ 0.951 (steps 28–30)")
    assert below.hint == ("raise the learning rate; train longer: only 30 steps (more records or "
                          "epochs); check that completion labels are not all masked and LoRA "
                          "params are trainable")


def test_l002_hint_names_the_lr_peak_and_drops_train_longer_past_min_steps() -> None:
    lr = [(s, 2e-4) for s in range(1, 31)]
    found = check(analyse(log([1.0] * 30, learning_rate=lr), min_steps=30), "L002")
    assert found.hint == ("raise the learning rate (peak was 0.0002; LoRA usually 1e-4–3e-4); "
                          "check that completion labels are not all masked and LoRA params are "
                          "trainable")
    assert found.message.startswith("no meaningful decrease (fell 0.0%;")


def test_l002_a_rise_beyond_five_percent_says_rose_and_lower() -> None:
    found = check(analyse(log([1.0] * 15 + [1.2] * 15)), "L002")
    assert (found.status, found.message, found.hint) == (
        "fail", "loss rose 20%: 1 (steps 1–3) → 1.2 (steps 28–30)",
        "lower the learning rate; see L003")
    small = check(analyse(log([1.0] * 15 + [1.02] * 15)), "L002")
    assert small.message.startswith("no meaningful decrease (rose 2.0%; needs")
    below_rise = check(analyse(log([1.0] * 15 + [1.04] * 15)), "L002")
    assert below_rise.message.startswith("no meaningful decrease (rose 4.0%;")


def test_l002_skips_a_curve_that_starts_at_zero_or_has_one_record() -> None:
    assert check(analyse(log([0.0, 0.0, 1.0])), "L002") == Finding(
        "L002", "skip", "loss starts at 0 (see L007)")
    assert check(analyse(log([1.0])), "L002") == Finding(
        "L002", "skip", "fewer than two finite loss records: no trend to judge")


def noisy(seed: int) -> list[float]:
    """|N(0, 0.6)| batch noise over 1.0, the second half 10 % lower."""
    y = 1.0 + np.abs(np.random.default_rng(seed).normal(0, 0.6, 40))
    return [float(v if i < 20 else 0.9 * v) for i, v in enumerate(y)]


def test_l002_a_fall_within_the_noise_says_so_with_z() -> None:
    rep = analyse(log(noisy(1)))
    found, noise = check(rep, "L002"), rep.details.noise
    z, rel = found.evidence["decrease_z"], found.evidence["relative_decrease"]
    assert found.status == "fail" and 0 < z < 3 and rel >= 0.05 and noise > 0.1
    assert found.message.endswith(f", within the batch-to-batch noise (±{noise:.0%}, z={z:.1f})")
    assert f"(fell {rel:.1%}; needs" in found.message


def test_l002_a_small_change_within_the_noise_gets_no_noise_note() -> None:
    found = check(analyse(log(noisy(2))), "L002")
    assert abs(found.evidence["decrease_z"]) < 3 and found.evidence["relative_decrease"] < 0.05
    assert found.message.endswith("(steps 37–40)")


# --- L003 ---

def spiked(at: int, value: float, n: int = 30) -> list[float]:
    y = [1.0] * n
    y[at - 1] = value
    return y


def test_l003_one_spike_is_located_with_its_median() -> None:
    rep = analyse(log(spiked(20, 5.0)))
    flat = {"steps": [21, 30], "slope": 0.0, "stderr": 0.0, "t": 0.0, "change": 0.0}
    assert check(rep, "L003") == Finding(
        "L003", "warn", "1 spike(s) above 2× the running median: step 20 (5 vs median 1)",
        "lower the learning rate (or add warmup), keep max_grad_norm=1.0",
        {"spikes": 1, "spike_steps": [20], "last_third": flat})
    assert rep.details.spikes == [[20, 5.0, 1.0]]


def test_l003_a_spike_is_strictly_above_twice_the_median() -> None:
    assert check(analyse(log(spiked(20, 2.0))), "L003").status == "pass"
    assert check(analyse(log(spiked(20, 2.01))), "L003").status == "warn"


def test_l003_shows_five_spikes_and_keeps_twenty_steps() -> None:
    y = [5.0 if s % 4 == 0 else 1.0 for s in range(1, 101)]  # 25 spikes, one per window
    found = check(analyse(log(y)), "L003")
    assert found.evidence["spikes"] == 25
    assert found.evidence["spike_steps"] == list(range(4, 81, 4))
    shown = ", ".join(f"step {s} (5 vs median 1)" for s in (4, 8, 12, 16, 20))
    assert found.message == f"25 spike(s) above 2× the running median: {shown} …"


def test_l003_names_the_lr_peak_in_its_hint() -> None:
    lr = [(s, 2e-4) for s in range(1, 31)]
    assert check(analyse(log(spiked(20, 5.0), learning_rate=lr)), "L003").hint == \
        "lower the learning rate (peak was 0.0002) (or add warmup), keep max_grad_norm=1.0"


def test_l003_a_rising_last_third_and_a_climb_back() -> None:
    y = [1.0] * 20 + [1.0 + 0.1 * i for i in range(1, 11)]  # 1.1 … 2.0 over steps 21-30
    found = check(analyse(log(y)), "L003")
    rising, climb = found.message.split("; ")
    assert rising.startswith("loss rising over the last third (steps 21–30): +58%, slope 0.1 ± ")
    assert rising.endswith("/step")
    assert climb == "loss climbed back from 1 (steps 1–3) to 1.9 in the last tenth"
    assert found.evidence["last_third"]["change"] == pytest.approx(0.9 / 1.55)


def test_l003_climb_back_needs_more_than_thirty_percent_and_twenty_records() -> None:
    def climbed(last: float, n: int = 30) -> bool:
        y = [1.0] * (n - 3) + [last] * 3
        return "climbed back" in check(analyse(log(y)), "L003").message

    assert climbed(1.31) and not climbed(1.3)
    assert not climbed(2.0, n=19)


def test_l003_passes_pinned_on_a_clean_fall() -> None:
    found = check(analyse(log(STEP_DOWN)), "L003")
    assert (found.status, found.message) == (
        "pass", "no spikes above 2× the running median and no rising trend")


# --- L005 / L008 ---

LINE = [2.0 - 0.02 * s for s in range(1, 31)]  # train falls 1.98 → 1.40 (1.42 at step 29)


def test_l008_and_l005_without_eval() -> None:
    rep = analyse(log(STEP_DOWN))
    assert check(rep, "L008") == Finding(
        "L008", "info", "no eval loss logged: over/underfitting cannot be judged",
        "pass an eval_dataset and set eval_strategy='steps'")
    assert check(rep, "L005") == Finding("L005", "skip", "no eval loss to compare with")
    assert rep.details.eval is None


def test_l005_eval_rising_from_its_best_while_train_falls() -> None:
    rep = analyse(log(LINE, eval=[(10, 1.0), (20, 0.8), (30, 0.88)]))
    assert check(rep, "L008") == Finding("L008", "pass", "3 eval loss records")
    l005 = check(rep, "L005")
    assert (l005.status, l005.message) == (
        "warn", "eval loss rose 10% from its best 0.8 at step 20 to 0.88 at step 30 while train "
        "loss fell 1.6 → 1.42; eval−train gap -0.8 → -0.54")
    assert l005.hint == ("use the checkpoint near step 20 (load_best_model_at_end=True), fewer "
                         "epochs, more data or more lora_dropout/weight_decay")
    assert l005.evidence == {"best_step": 20, "best_eval": 0.8, "last_eval": 0.88,
                             "gap_first": pytest.approx(-0.8), "gap_last": pytest.approx(-0.54)}
    ev = rep.details.eval
    assert (ev["records"], ev["first"], ev["best"], ev["best_step"], ev["last"],
            ev["last_step"]) == (3, 1.0, 0.8, 20, 0.88, 30)


@pytest.mark.parametrize(("evals", "train"), [
    ([(20, 0.8), (30, 0.88)], LINE),  # two eval records are not a trend
    ([(10, 1.0), (20, 0.8), (30, 0.84)], LINE),  # rose exactly 5%
    ([(10, 1.0), (20, 0.8), (30, 0.88)], [1.5] * 30),  # train did not fall
    ([(10, 1.0), (20, 0.9), (30, 0.8)], LINE),  # best is the last
])
def test_l005_passes_short_of_each_condition(evals: list[tuple[int, float]],
                                             train: list[float]) -> None:
    assert check(analyse(log(train, eval=evals)), "L005").status == "pass"


def test_l005_pass_pins_best_last_and_gap() -> None:
    l005 = check(analyse(log(LINE, eval=[(10, 1.0), (20, 0.9), (30, 0.8)])), "L005")
    assert l005 == Finding("L005", "pass", "eval loss best 0.8 at step 30, last 0.8; eval−train "
                           "gap -0.62", "", {"best_eval": 0.8, "last_eval": 0.8})


def test_l005_train_must_fall_more_than_two_percent_after_the_best() -> None:
    train = [1.0] * 20 + [0.985] * 10  # 1.5 % lower after the best eval at step 20
    found = check(analyse(log(train, eval=[(10, 1.0), (20, 0.8), (30, 0.88)])), "L005")
    assert found.status == "pass"
    train = [1.0] * 20 + [0.97] * 10
    assert check(analyse(log(train, eval=[(10, 1.0), (20, 0.8), (30, 0.88)])),
                 "L005").status == "warn"


# --- L006 ---

def test_l006_counts_steps_with_epochs_tokens_and_an_early_stop() -> None:
    rep = analyse(log(STEP_DOWN, epoch=[(30, 1.5)], tokens_seen=12345, max_steps=100))
    assert check(rep, "L006") == Finding(
        "L006", "warn", "only 30 optimizer steps (< 50; 1.5 epochs; 12,345 tokens; stopped before "
        "max_steps=100)", "the adapter had little chance to move: add training records, raise "
        "num_train_epochs, or lower batch size / gradient_accumulation_steps",
        {"steps": 30, "min_steps": 50})


def test_l006_passes_at_min_steps() -> None:
    assert check(analyse(log(STEP_DOWN, max_steps=30), min_steps=30), "L006") == Finding(
        "L006", "pass", "30 optimizer steps (≥ 30)", "", {"steps": 30})
    assert check(analyse(log(STEP_DOWN), min_steps=31), "L006").status == "warn"


# --- details ---

def test_details_record_the_run() -> None:
    lr = [(s, 2e-4) for s in range(1, 31)]
    d = analyse(log(STEP_DOWN, max_steps=40, global_step=30, epoch=[(30, 0.75)],
                    num_train_epochs=1.0, learning_rate=lr)).details
    assert (d.label, d.source, d.format, d.records, d.steps, d.max_steps, d.completed) == (
        "run", "run.jsonl", "jsonl", 30, 30, 40, False)
    assert (d.epochs, d.num_train_epochs, d.min_loss, d.min_loss_step) == (0.75, 1.0, 1.0, 16)
    assert d.lr_schedule is not None and d.lr_schedule["kind"] == "constant"
    assert [len(d.curves[k]) for k in ("train", "eval", "lr")] == [30, 0, 30]
    assert d.curves["train"][0] == [1.0, 2.0, 2.0]
    done = analyse(log(STEP_DOWN, max_steps=30)).details
    assert done.completed is True and analyse(log(STEP_DOWN)).details.completed is None


def test_checks_are_sorted_by_code() -> None:
    codes = [c.code for c in analyse(log(STEP_DOWN)).checks]
    assert codes == sorted(codes) and len(codes) == 9


# --- several runs ---

def test_two_runs_prefix_each_message_and_pick_the_lower_end_loss() -> None:
    a, b = log(STEP_DOWN, label="a"), log([2.0] * 15 + [0.5] * 15, label="b")
    rep = loss_report([a, b])
    l002 = [c for c in rep.checks if c.code == "L002"]
    assert [c.message.split(": ")[0] for c in l002] == ["a", "b"]
    assert [c.evidence["run"] for c in l002] == ["a", "b"]
    assert l002[1].message == "b: loss fell 75%: 2 (steps 1–3) → 0.5 (steps 28–30)"
    assert (rep.details.best_run, rep.details.best_by) == ("b", "end train loss")
    assert [(r.analysis.label, r.verdict) for r in rep.details.runs] == [("a", "warn"),
                                                                        ("b", "warn")]
    assert rep.details.runs[0].codes == ["L006", "L008"]


def test_runs_with_eval_are_ranked_by_best_eval_and_same_labels_are_numbered() -> None:
    a = log(STEP_DOWN, label="x", eval=[(30, 0.7)])
    b = log([2.0] * 15 + [0.5] * 15, label="x", eval=[(30, 0.9)])
    rep = loss_report([a, b])
    assert (rep.details.best_run, rep.details.best_by) == ("x#1", "best eval loss")


# --- the statistics underneath, on inputs small enough to work out by hand ---

def test_trend_on_four_points_worked_by_hand() -> None:
    """x 0..3, y 0 2 1 3: slope 4/5, residuals ∓0.3 ±0.9, stderr √(1.8 / 2 / 5)."""
    t = trend(np.array([0, 1, 2, 3]), np.array([0.0, 2.0, 1.0, 3.0]))
    assert t is not None and t["steps"] == [0, 3]
    assert (t["slope"], t["stderr"]) == (pytest.approx(0.8), pytest.approx(0.18 ** 0.5))
    assert t["t"] == pytest.approx(0.8 / 0.18 ** 0.5) and t["change"] == pytest.approx(1.6)


def test_trend_on_three_points_uses_one_degree_of_freedom() -> None:
    t = trend(np.array([0, 1, 2]), np.array([0.0, 2.0, 1.0]))
    assert t is not None and (t["slope"], t["stderr"]) == (pytest.approx(0.5),
                                                          pytest.approx(0.75 ** 0.5))


def test_trend_needs_three_distinct_steps_and_a_mean_for_change() -> None:
    assert trend(np.array([1, 2]), np.array([1.0, 2.0])) is None
    assert trend(np.array([5, 5, 5]), np.array([1.0, 2.0, 3.0])) is None
    t = trend(np.array([1, 2, 3]), np.array([-1.0, 0.0, 1.0]))
    assert t is not None and t["change"] == 0.0 and t["t"] == math.inf
    down = trend(np.array([1, 2, 3]), np.array([3.0, 2.0, 1.0]))
    assert down is not None and down["t"] == -math.inf
    flat = trend(np.array([1, 2, 3]), np.array([1.0, 1.0, 1.0]))
    assert flat is not None and flat["t"] == 0.0


def test_rolling_median_pads_with_the_edge_when_the_curve_is_short() -> None:
    """3 values, window 7: [1 1 1 | 1 5 2 | 2 2 2] gives medians 1, 2, 2 (reflecting would not)."""
    assert rolling_median(np.array([1.0, 5.0, 2.0]), 7).tolist() == [1.0, 2.0, 2.0]


def test_rolling_median_with_nan_takes_numpys_median_per_window() -> None:
    out = rolling_median(np.array([1.0, np.nan, 2.0, 3.0, 4.0]), 3)  # last window: 3 4 | 3
    assert out.shape == (5,) and np.isnan(out[:3]).all() and out[3:].tolist() == [3.0, 3.0]


def test_rolling_median_of_nothing_or_window_one_is_the_input() -> None:
    assert rolling_median(np.zeros(0), 5).tolist() == []
    assert rolling_median(np.array([3, 1, 2]), 1).tolist() == [3.0, 1.0, 2.0]


@pytest.mark.parametrize(("n", "window"), [(9, 1), (10, 5), (149, 5), (150, 7), (799, 31),
                                           (800, 31), (10_000, 31)])
def test_the_smoothing_window_grows_with_the_run(n: int, window: int) -> None:
    assert _window(n) == window


def test_curves_are_sampled_to_400_points_keeping_both_ends() -> None:
    steps = np.arange(1000)
    rows = _sample(steps, steps * 2.0)
    assert len(rows) == 400 and rows[0] == [0, 0.0] and rows[-1] == [999, 1998.0]
    assert rows[1] == [3, 6.0]  # 999 / 399 = 2.5 apart, rounded
    assert len(_sample(np.arange(400), np.zeros(400))) == 400
    assert _sample(np.arange(401), np.zeros(401))[-1] == [400, 0.0]


def test_relative_residual_floors_a_near_zero_median_at_a_tenth_of_the_loss() -> None:
    out = _relative_residual(np.array([1.0, 1.0, 1.0]), np.zeros(3))
    assert out.tolist() == pytest.approx([9.0, 9.0, 9.0])


def test_relative_noise_is_the_scaled_mad_of_the_residuals() -> None:
    """Residuals .1 … .5: median .3, absolute deviations .2 .1 0 .1 .2, MAD .1."""
    fl = np.array([1.1, 1.2, 1.3, 1.4, 1.5])
    assert _relative_noise(fl, np.ones(5)) == pytest.approx(0.14826)
    assert _relative_noise(np.zeros(0), np.zeros(0)) == 0.0


def test_finite_or_inf() -> None:
    assert (_finite_or_inf(2), _finite_or_inf(None), _finite_or_inf(float("nan"))) == (
        2.0, math.inf, math.inf)


def test_best_run_without_any_end_loss_is_none() -> None:
    empty = analyse(LossLog("e.jsonl", "jsonl"))
    run = LossRun(empty.details, "fail", ["L001"])
    assert best_run([run]) == (None, "none")


def test_span_of_one_step_is_that_step() -> None:
    assert (_span([4, 4]), _span([4, 9])) == ("4", "4–9")


# --- boundaries of L002, L003 and L005 at exactly representable values ---

def test_l002_a_fall_of_exactly_five_percent_passes() -> None:
    assert check(analyse(log([20.0] * 15 + [19.0] * 15)), "L002").status == "pass"


def test_l002_a_rise_of_exactly_five_percent_is_not_called_a_rise() -> None:
    found = check(analyse(log([20.0] * 15 + [21.0] * 15)), "L002")
    assert found.message.startswith("no meaningful decrease (rose 5.0%; needs")
    over = check(analyse(log([20.0] * 15 + [21.2] * 15)), "L002")
    assert over.evidence == {"start_loss": 20.0, "end_loss": 21.2,
                             "relative_decrease": pytest.approx(-0.06), "min_loss": 20.0,
                             "min_loss_step": 1, "decrease_z": None}


def test_l002_two_records_are_enough_to_judge() -> None:
    assert check(analyse(log([2.0, 1.0])), "L002").message == \
        "loss fell 50%: 2 (steps 1) → 1 (steps 2)"


def test_l002_z_is_the_fall_over_the_standard_error_of_two_medians() -> None:
    rep = analyse(log(noisy(1)))
    d = rep.details
    k = 4  # a tenth of 40 records
    se = 1.2533 * d.noise / math.sqrt(k) * math.hypot(d.start_loss, d.end_loss)
    assert d.decrease_z == pytest.approx((d.start_loss - d.end_loss) / se)


def noisy_slope(seed: int, sign: int) -> list[float]:
    """20 records at 2.0, then 10 moving by 0.02 a step with N(0, 0.03) noise."""
    noise = np.random.default_rng(seed).normal(0, 0.03, 10)
    return [2.0] * 20 + [float(v) for v in 1.5 + sign * 0.02 * np.arange(10) + noise]


def test_l002_still_falling_needs_t_below_minus_three_not_four() -> None:
    rep = analyse(log(noisy_slope(13, -1)))
    assert -4 < rep.details.last_third["t"] < -3
    assert check(rep, "L002").message.endswith("; still falling 12% over the last third: more "
                                               "steps may help")


def test_l002_a_last_third_falling_under_five_percent_is_not_still_falling() -> None:
    tail = [1.01 - 0.002 * i for i in range(10)]  # -1.8 % over the last third, t = -inf
    found = check(analyse(log([2.0] * 20 + tail)), "L002")
    assert found.status == "pass" and "still falling" not in found.message


def test_l003_a_rise_with_t_between_three_and_four_is_rising() -> None:
    rep = analyse(log(noisy_slope(32, 1)))
    assert 3 < rep.details.last_third["t"] < 4
    assert check(rep, "L003").message.startswith(
        "loss rising over the last third (steps 21–30): +8%, slope 0.014 ± 0.0038/step")


def test_l003_pass_carries_its_evidence() -> None:
    flat = {"steps": [21, 30], "slope": 0.0, "stderr": 0.0, "t": 0.0, "change": 0.0}
    assert check(analyse(log([2.0] * 20 + [1.0] * 10)), "L003").evidence == {
        "spikes": 0, "spike_steps": [], "last_third": flat}


def test_l003_five_spikes_are_all_shown_and_six_are_cut() -> None:
    def spikes(n: int) -> str:
        y = [5.0 if s % 4 == 0 and s <= 4 * n else 1.0 for s in range(1, 41)]
        return check(analyse(log(y)), "L003").message

    assert spikes(5).startswith("5 spike(s)") and not spikes(5).endswith(" …")
    assert spikes(6).startswith("6 spike(s)") and spikes(6).endswith(" …")


def test_l003_climb_back_from_the_lowest_tenth_wherever_it_is() -> None:
    y = [2.0] * 9 + [1.0] * 12 + [1.5] * 9  # tenths of 3: lowest is the 4th (steps 10-12)
    assert check(analyse(log(y)), "L003").message == (
        "loss climbed back from 1 (steps 10–12) to 1.5 in the last tenth")


def test_l003_climb_back_from_a_low_loss_but_never_from_zero() -> None:
    low = check(analyse(log([0.5] * 27 + [1.0] * 3)), "L003")
    assert "climbed back from 0.5 (steps 1–3) to 1" in low.message
    zero = check(analyse(log([0.0] * 27 + [1.0] * 3)), "L003")
    assert "climbed back" not in zero.message


def test_l003_climb_back_needs_twenty_records() -> None:
    assert "climbed back" in check(analyse(log([1.0] * 17 + [2.0] * 3)), "L003").message


def test_l005_eval_gap_is_sampled_per_eval_step() -> None:
    ev = analyse(log(LINE, eval=[(10, 1.0), (20, 0.8), (30, 0.88)])).details.eval
    assert [s for s, _ in ev["gap"]] == [10, 20, 30]
    assert [g for _, g in ev["gap"]] == pytest.approx([-0.8, -0.8, -0.54])


def test_l005_a_best_eval_of_zero_is_no_rise() -> None:
    found = check(analyse(log(LINE, eval=[(10, 1.0), (20, 0.0), (30, 0.5)])), "L005")
    assert found.status == "pass"


def test_l005_needs_a_rise_above_exactly_five_percent() -> None:
    at = check(analyse(log(LINE, eval=[(10, 25.0), (20, 20.0), (30, 21.0)])), "L005")
    assert at.status == "pass"  # 1 / 20 is exactly 0.05


def test_l005_train_must_fall_more_than_exactly_two_percent() -> None:
    train = [1.0] * 20 + [0.98] * 10
    assert check(analyse(log(train, eval=[(10, 1.0), (20, 0.8), (30, 0.88)])),
                 "L005").status == "pass"


# --- reports ---

def test_reports_are_loss_reports_of_layer_l() -> None:
    one = analyse(log(STEP_DOWN))
    two = loss_report([log(STEP_DOWN, label="a"), log(STEP_DOWN, label="b")])
    assert (one.command, one.layers_run) == ("loss-report", ["L"])
    assert (two.command, two.layers_run) == ("loss-report", ["L"])


def test_the_combined_report_keeps_each_findings_hint_and_check() -> None:
    a = log(STEP_DOWN, label="a")
    single = check(analyse(a), "L006")
    combined = next(c for c in loss_report([a, log(STEP_DOWN, label="b")]).checks
                    if c.code == "L006")
    assert combined == Finding("L006", single.status, f"a: {single.message}", single.hint,
                               {"run": "a", **single.evidence}, single.check)


def test_the_default_min_steps_is_fifty() -> None:
    assert check(loss_report([log([1.0] * 25 + [0.5] * 25)]), "L006").status == "pass"
    assert check(analyse(log([1.0] * 25 + [0.5] * 24)), "L006").status == "warn"


def test_loss_report_passes_column_names_to_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    path.write_text("it,train_ce\n" + "".join(f"{i},{2.0 - i / 100}\n" for i in range(1, 61)))
    rep = loss_report([path], step_col="it", loss_col="train_ce")
    assert check(rep, "L001").message == "60 train loss records (csv)"


def test_details_carry_the_logs_notes_config_and_counts() -> None:
    d = analyse(log(STEP_DOWN, notes=["merged 2 files"], config={"lr": 1e-4}, tokens_seen=99,
                    duplicates_merged=3, was_unsorted=True)).details
    assert (d.notes, d.config, d.tokens_seen, d.duplicates_merged, d.was_unsorted) == (
        ["merged 2 files"], {"lr": 1e-4}, 99, 3, True)


# --- the learning-rate schedule, on schedules written as formulas ---

T = np.arange(100)


def test_a_linear_decay_from_the_first_step() -> None:
    assert guess_lr_schedule(T, 2e-4 * (1 - T / 100)) == {
        "kind": "linear", "peak": 2e-4, "peak_step": 0, "final": pytest.approx(2e-6),
        "warmup_steps": 0}


def test_warmup_then_cosine_names_both_and_the_warmup_length() -> None:
    warm = 2e-5 + (2e-4 - 2e-5) * T / 9
    lr = np.where(T < 10, warm, 2e-4 * 0.5 * (1 + np.cos(np.pi * (T - 9) / 90)))
    assert guess_lr_schedule(T + 1, lr) == {
        "kind": "warmup + cosine", "peak": 2e-4, "peak_step": 10, "final": pytest.approx(0.0),
        "warmup_steps": 10}


def test_a_cosine_cut_at_half_is_recognised_only_with_max_steps() -> None:
    t = np.arange(51)
    lr = 2e-4 * 0.5 * (1 + np.cos(np.pi * t / 100))
    assert guess_lr_schedule(t, lr, 100)["kind"] == "cosine"  # type: ignore[index]
    assert guess_lr_schedule(t, lr, None)["kind"] == "decaying"  # type: ignore[index]
    assert guess_lr_schedule(t, lr, 50)["kind"] == "decaying"  # type: ignore[index]


def test_a_step_decay_fits_no_curve_and_is_decaying() -> None:
    out = guess_lr_schedule(T, np.where(T < 50, 2e-4, 2e-5))
    assert out == {"kind": "decaying", "peak": 2e-4, "peak_step": 0, "final": 2e-5,
                   "warmup_steps": 0}


def test_constant_zero_and_too_short_schedules() -> None:
    assert guess_lr_schedule(T, np.full(100, 3e-4)) == {
        "kind": "constant", "peak": 3e-4, "peak_step": 0, "final": 3e-4, "warmup_steps": 0}
    assert guess_lr_schedule(T, np.zeros(100))["kind"] == "zero"  # type: ignore[index]
    assert guess_lr_schedule(np.arange(3), np.array([3.0, 2.0, 1.0]))["kind"] == "decaying"  # type: ignore[index]
    assert guess_lr_schedule(np.arange(4), np.array([4.0, 3.0, 2.0, 1.0]))["kind"] == "linear"  # type: ignore[index]
    assert guess_lr_schedule(np.zeros(0), np.zeros(0)) is None
    assert guess_lr_schedule(np.arange(2), np.array([np.nan, np.nan])) is None


def test_constant_means_a_range_of_at_most_a_hundredth_of_the_peak() -> None:
    at = np.array([100.0, 99.0, 99.0, 99.0, 99.0])
    assert guess_lr_schedule(np.arange(5), at)["kind"] == "constant"  # type: ignore[index]
    over = np.array([100.0, 98.0, 98.0, 98.0, 98.0])
    assert guess_lr_schedule(np.arange(5), over)["kind"] != "constant"  # type: ignore[index]


@pytest.mark.parametrize(("first", "warm"), [(1.0, True), (1.89, True), (1.9, False),
                                             (1.96, False)])
def test_warmup_means_starting_below_95_percent_of_the_peak(first: float, warm: bool) -> None:
    """Peak 2.0 at the second step: 1.9 is exactly 95 % of it (not below)."""
    out = guess_lr_schedule(np.arange(1, 7), np.array([first, 2.0, 2.0, 2.0, 2.0, 2.0]))
    assert out is not None
    assert (out["kind"], out["warmup_steps"]) == (("warmup + constant", 2) if warm
                                                  else ("constant", 0))


def test_analyse_passes_max_steps_to_the_schedule_guess() -> None:
    t = range(51)
    lr = [(s, float(2e-4 * 0.5 * (1 + np.cos(np.pi * s / 100)))) for s in t]
    d = analyse(log(STEP_DOWN, learning_rate=lr, max_steps=100)).details
    assert d.lr_schedule is not None and d.lr_schedule["kind"] == "cosine"


def test_l001_joins_the_readers_notes() -> None:
    rep = analyse(LossLog("r", "csv", notes=["no step column", "no loss column"]))
    assert rep.checks[0].message == "no training loss records in r (no step column; no loss column)"


def test_a_spike_must_stand_eight_noise_widths_out() -> None:
    """N(1, 0.18) batch noise and one value of 2.3: 2.16× its running median, 8.6 noise widths."""
    y = 1 + np.random.default_rng(0).normal(0, 0.18, 40)
    y[25] = 2.3
    rep = analyse(log([float(v) for v in y]))
    rel = 2.3 / rep.details.spikes[0][2] - 1
    assert 8 * rep.details.noise < rel < 9 * rep.details.noise
    assert check(rep, "L003").evidence["spike_steps"] == [26]


def test_l002_a_fall_of_exactly_five_percent_within_the_noise_says_so() -> None:
    """First and last tenth exactly 20 and 19 (rel 1/20), a noisy middle: z well under 3."""
    middle = 20 + np.random.default_rng(3).normal(0, 4, 32)
    rep = analyse(log([20.0] * 4 + [float(v) for v in middle] + [19.0] * 4))
    found = check(rep, "L002")
    assert found.evidence["relative_decrease"] == 0.05 and abs(found.evidence["decrease_z"]) < 3
    assert ", within the batch-to-batch noise (±" in found.message


def test_run_labels_strip_log_suffixes_only(tmp_path: Path) -> None:
    paths = [tmp_path / "a.ndjson", tmp_path / "b.json", tmp_path / "c.csv", tmp_path / "run.v2"]
    assert run_labels(paths) == ["a", "b", "c", "run.v2"]
    assert run_labels([Path("/")]) == ["/"]


def test_a_four_step_cosine_is_fitted_on_its_own_span() -> None:
    lr = 0.5 * (1 + np.cos(np.pi * np.arange(4) / 3))  # 1, .75, .25, 0
    assert guess_lr_schedule(np.arange(4), lr) == {"kind": "cosine", "peak": 1.0, "peak_step": 0,
                                                   "final": pytest.approx(0.0),
                                                   "warmup_steps": 0}


def test_max_steps_below_the_last_logged_step_is_ignored() -> None:
    t = np.arange(101)
    lr = 2e-4 * 0.5 * (1 + np.cos(np.pi * t / 100))
    assert guess_lr_schedule(t, lr, 60)["kind"] == "cosine"  # type: ignore[index]


def test_l002_a_fall_three_to_four_noise_widths_out_is_clear() -> None:
    y = 1.0 + np.abs(np.random.default_rng(1).normal(0, 0.3, 40))
    y[20:] *= 0.8
    rep = analyse(log([float(v) for v in y]))
    assert 3 <= rep.details.decrease_z < 4
    assert check(rep, "L002").status == "pass"
