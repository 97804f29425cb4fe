"""Did training converge? Findings L001–L008 and L010 from a `LossLog`, with the numbers.

`analyse(log)` returns a `Report` (command "loss-report") whose `details` is a `LossAnalysis`
(the numbers of one run); `loss_report(paths)` with several paths returns one whose details is a
`LossComparison` (a `LossRun` per run, the best run); the runs' checks are merged into one list,
each message prefixed with the run's label and evidence["run"] set.
Start/end/min numbers are None when there is no finite loss (then L001 or L004 says why).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from ftdiag.findings import Finding, Report, finding, passed
from ftdiag.loss.details import LossAnalysis, LossComparison, LossRun
from ftdiag.loss.log import ArraySeries, Series
from ftdiag.loss.read import LossLog, read_loss_log

MIN_DECREASE = 0.05  # relative start→end decrease below this is "not decreasing" (L002)
SPIKE_FACTOR = 2.0  # a loss above this many times its running median is a spike (L003)
ZERO_GRAD_SHARE = 0.9  # grad_norm exactly 0 on at least this share of logged steps (L010)
RISE = 0.05  # relative rise over the last third (or of eval above its best) that counts
CURVE_POINTS = 400
_HINT_LR = "lower the learning rate (or add warmup), keep max_grad_norm=1.0"


def loss_report(paths: Sequence[str | Path | LossLog], *, min_steps: int = 50,
                **cols: str) -> Report:
    """Analyse one run, or several side by side (details is then a LossComparison).

    An item is a path (read with `read_loss_log`) or a LossLog already read (an MLflow run).
    """
    logs = [p if isinstance(p, LossLog) else read_loss_log(p, **cols) for p in paths]
    reports = [analyse(log, min_steps=min_steps) for log in logs]
    names = run_labels([Path(p.source if isinstance(p, LossLog) else p) for p in paths])
    labels = [log.label or name for log, name in zip(logs, names, strict=True)]
    labels = [f"{lab}#{i + 1}" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]
    for rep, label in zip(reports, labels, strict=True):
        _analysis(rep).label = label
    if len(reports) == 1:
        return reports[0]
    combined = Report("loss-report", layers_run=["L"])
    runs = []
    for rep, label in zip(reports, labels, strict=True):
        for c in rep.checks:
            combined.add(Finding(c.code, c.status, f"{label}: {c.message}", c.hint,
                                 {"run": label, **c.evidence}, c.check))
        runs.append(LossRun(_analysis(rep), rep.verdict, sorted(rep.codes())))
    best, by = best_run(runs)
    combined.details = LossComparison(runs, best, by)
    return combined


def _analysis(rep: Report) -> LossAnalysis:
    assert isinstance(rep.details, LossAnalysis)  # analyse() sets it
    return rep.details


def best_run(runs: list[LossRun]) -> tuple[str | None, str]:
    """Label of the best run: lowest best eval loss if every run has one, else lowest end loss."""
    usable = [r for r in runs if r.analysis.end_loss is not None]
    if not usable:
        return None, "none"
    key: Any
    if all(r.analysis.eval for r in usable):
        key, by = (lambda r: r.analysis.eval["best"]), "best eval loss"
    else:
        key, by = (lambda r: r.analysis.end_loss), "end train loss"
    ranked = sorted(usable, key=lambda r: (r.verdict == "fail", _finite_or_inf(key(r))))
    return ranked[0].label, by


def run_labels(paths: list[Path]) -> list[str]:
    """Short unique names: the run dir's name (not 'trainer_state.json' or 'checkpoint-N')."""
    def name(p: Path) -> str:
        if p.name == "trainer_state.json" or p.name.startswith("events.out.tfevents"):
            p = p.parent
        if p.parent.name == "runs":  # transformers' output_dir/runs/<date_host>/
            p = p.parent
        if p.name == "runs" and p.parent.name:
            p = p.parent
        if p.name.startswith("checkpoint-") and p.parent.name:
            return f"{p.parent.name}/{p.name}"
        return p.stem if p.suffix in (".csv", ".jsonl", ".ndjson", ".json") else p.name
    labels = [name(p.resolve()) or str(p) for p in paths]
    return [f"{lab}#{i + 1}" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]


def analyse(log: LossLog, *, min_steps: int = 50) -> Report:
    """Run the L checks on one run's curves; details hold the numbers (see module docstring)."""
    rep = Report("loss-report", layers_run=["L"])
    steps, loss = _arrays(log.train)
    ev_steps, ev_loss = _arrays(log.eval)
    gn_steps, gn = _arrays(log.grad_norm)
    d = LossAnalysis(  # every field is there, even with no records
        label=log.label or run_labels([Path(log.source)])[0], source=log.source,
        format=log.format, notes=list(log.notes), config=dict(log.config),
        records=int(steps.size), steps=log.steps_done, max_steps=log.max_steps,
        completed=None if not log.max_steps else log.steps_done >= log.max_steps,
        epochs=log.epoch[-1][1] if log.epoch else None, num_train_epochs=log.num_train_epochs,
        tokens_seen=log.tokens_seen, duplicates_merged=log.duplicates_merged,
        was_unsorted=log.was_unsorted,
        lr_schedule=guess_lr_schedule(*_arrays(log.learning_rate), log.max_steps))
    rep.details = d
    if steps.size == 0:
        where = "; ".join(log.notes) or "no 'loss' entries"
        rep.add(finding("L001", f"no training loss records in {log.source} ({where})",
                        hint="point at the run's output_dir, trainer_state.json or exported "
                             "log; set logging_steps so the Trainer logs the loss",
                        source=log.source, format=log.format))
        for code in ("L002", "L003", "L004", "L005", "L006", "L007", "L010"):
            rep.add(Finding(code, "skip", "no loss records"))
        return rep
    rep.add(passed("L001", f"{steps.size} train loss records ({log.format})",
                   records=int(steps.size)))
    ok = np.isfinite(loss)
    fs, fl = steps[ok], loss[ok]
    smooth = rolling_median(fl, _window(fl.size))
    rep.add(_check_nonfinite(steps, loss, ev_steps, ev_loss, gn_steps, gn, d))
    rep.add(_check_zero(steps, loss))
    zero_grad = _check_zero_grad(gn_steps, gn)
    rep.add(zero_grad)
    _describe_curve(fs, fl, smooth, d)
    decrease = _check_decrease(d, log, min_steps)
    if zero_grad.status == "fail" and decrease.status == "fail":
        decrease.hint = "grad_norm is 0 (L010): the optimizer moved nothing; " + decrease.hint
    rep.add(decrease)
    rep.add(_check_diverging(fs, fl, smooth, d))
    rep.add(*_check_eval(fs, smooth, ev_steps, ev_loss, d))
    rep.add(_check_steps(log, min_steps, d))
    d.curves = {"train": _sample(fs, fl, smooth), "eval": _sample(*_finite(ev_steps, ev_loss)),
                "lr": _sample(*_finite(*_arrays(log.learning_rate)))}
    rep.checks.sort(key=lambda c: c.code)
    return rep


def _describe_curve(fs: np.ndarray, fl: np.ndarray, smooth: np.ndarray,
                    d: LossAnalysis) -> None:
    """start/end/min loss, relative decrease (and its z against the batch noise), last third."""
    d.finite_records = int(fl.size)
    if fl.size == 0:
        return
    k = int(min(max(fl.size // 10, 1), 50))
    start, end = float(np.median(fl[:k])), float(np.median(fl[-k:]))
    d.noise = noise = _relative_noise(fl, smooth)
    se = 1.2533 * noise / math.sqrt(k) * math.hypot(start, end)  # s.e. of a median of k
    d.decrease_z = (start - end) / se if se > 0 else None
    i = int(np.argmin(fl))
    d.start_loss, d.end_loss = start, end
    d.start_steps, d.end_steps = [int(fs[0]), int(fs[k - 1])], [int(fs[-k]), int(fs[-1])]
    d.min_loss, d.min_loss_step = float(fl[i]), int(fs[i])
    d.relative_decrease = (start - end) / abs(start) if start else None
    d.last_third = trend(fs[-max(fl.size // 3, 3):], fl[-max(fl.size // 3, 3):])


def trend(x: np.ndarray, y: np.ndarray) -> dict[str, Any] | None:
    """Least-squares slope of y over x with its standard error, t and relative change."""
    if x.size < 3 or np.ptp(x) == 0:
        return None
    xm, ym = x.mean(), y.mean()
    sxx = float(((x - xm) ** 2).sum())
    slope = float(((x - xm) * (y - ym)).sum() / sxx)
    resid = y - (ym + slope * (x - xm))
    stderr = math.sqrt(float((resid**2).sum()) / max(x.size - 2, 1) / sxx)
    t = slope / stderr if stderr > 0 else (0.0 if slope == 0 else math.copysign(math.inf, slope))
    change = slope * float(np.ptp(x)) / abs(float(ym)) if ym else 0.0
    return {"steps": [int(x[0]), int(x[-1])], "slope": slope, "stderr": stderr, "t": t,
            "change": change}


def _check_decrease(d: LossAnalysis, log: LossLog, min_steps: int) -> Finding:
    rel, z = d.relative_decrease, d.decrease_z
    if rel is None or d.finite_records < 2:
        why = "loss starts at 0 (see L007)" if d.start_loss == 0 else \
            "fewer than two finite loss records: no trend to judge"
        return Finding("L002", "skip", why)
    start, end = d.start_loss, d.end_loss
    assert d.start_steps is not None and d.end_steps is not None  # set with relative_decrease
    where = (f"{start:.4g} (steps {_span(d.start_steps)}) → {end:.4g} "
             f"(steps {_span(d.end_steps)})")
    ev: dict[str, Any] = {"start_loss": start, "end_loss": end, "relative_decrease": rel,
          "min_loss": d.min_loss, "min_loss_step": d.min_loss_step, "decrease_z": z}
    clear = z is None or abs(z) >= 3  # the change stands out of the batch-to-batch noise
    if rel >= MIN_DECREASE and clear:
        lt = d.last_third
        tail = ""
        if lt and lt["t"] < -3 and lt["change"] < -RISE:
            tail = f"; still falling {-lt['change']:.0%} over the last third: more steps may help"
        return passed("L002", f"loss fell {rel:.0%}: {where}{tail}", **ev)
    lr = d.lr_schedule
    peak = f" (peak was {lr['peak']:.2g}; LoRA usually 1e-4–3e-4)" if lr else ""
    if rel < -RISE and clear:
        return finding("L002", f"loss rose {-rel:.0%}: {where}",
                       hint=f"lower the learning rate{peak}; see L003", **ev)
    noise = "" if clear or abs(rel) < MIN_DECREASE else \
        f", within the batch-to-batch noise (±{d.noise:.0%}, z={z:.1f})"
    hints = [f"raise the learning rate{peak}"]
    if log.steps_done < min_steps:
        hints.append(f"train longer: only {log.steps_done} steps (more records or epochs)")
    hints.append("check that completion labels are not all masked and LoRA params are trainable")
    moved = f"fell {rel:.1%}" if rel >= 0 else f"rose {-rel:.1%}"
    return finding("L002", f"no meaningful decrease ({moved}; needs ≥ {MIN_DECREASE:.0%} "
                           f"beyond the noise): {where}{noise}", hint="; ".join(hints), **ev)


def _relative_residual(fl: np.ndarray, smooth: np.ndarray) -> np.ndarray:
    """loss / running median - 1 (near-zero medians floored at a tenth of the median loss)."""
    floor = 0.1 * float(np.median(fl)) if fl.size else 0.0
    return fl / np.maximum(smooth, max(floor, 1e-12)) - 1


def _relative_noise(fl: np.ndarray, smooth: np.ndarray) -> float:
    """Robust (MAD) spread of the relative residuals: the batch-to-batch noise of the curve."""
    rel = _relative_residual(fl, smooth)
    return 1.4826 * float(np.median(np.abs(rel - np.median(rel)))) if rel.size else 0.0


def _check_diverging(fs: np.ndarray, fl: np.ndarray, smooth: np.ndarray,
                     d: LossAnalysis) -> Finding:
    # k× the running median, and far outside the curve's own batch-to-batch noise
    rel = _relative_residual(fl, smooth)
    spikes_mask = (rel > SPIKE_FACTOR - 1) & (rel > 8 * (d.noise or 0.0))
    idx = np.flatnonzero(spikes_mask)
    d.spikes = [[int(fs[i]), float(fl[i]), float(smooth[i])] for i in idx[:20]]
    problems = []
    lt = d.last_third
    if lt and lt["t"] > 3 and lt["change"] > RISE:
        problems.append(f"loss rising over the last third (steps {_span(lt['steps'])}): "
                        f"+{lt['change']:.0%}, slope {lt['slope']:.3g} ± {lt['stderr']:.2g}/step")
    if fl.size >= 20:
        chunks = np.array_split(np.arange(fl.size), 10)  # tenths of the run, by record
        med = np.array([np.median(fl[c]) for c in chunks])
        j = int(np.argmin(med))
        if j < 9 and med[-1] > 1.3 * med[j] > 0:
            problems.append(f"loss climbed back from {med[j]:.4g} (steps "
                            f"{_span([int(fs[chunks[j][0]]), int(fs[chunks[j][-1]])])}) to "
                            f"{med[-1]:.4g} in the last tenth")
    if idx.size:
        shown = ", ".join(f"step {s} ({v:.3g} vs median {m:.3g})" for s, v, m in d.spikes[:5])
        problems.append(f"{idx.size} spike(s) above {SPIKE_FACTOR:g}× the running median: {shown}"
                        + (" …" if idx.size > 5 else ""))
    ev: dict[str, Any] = {"spikes": int(idx.size), "spike_steps": [s for s, _, _ in d.spikes],
          "last_third": lt}
    if not problems:
        return passed("L003", f"no spikes above {SPIKE_FACTOR:g}× the running median and no "
                              "rising trend", **ev)
    lr = d.lr_schedule
    peak = f" (peak was {lr['peak']:.2g})" if lr and lr["peak"] else ""
    return finding("L003", "; ".join(problems), hint=_HINT_LR.replace(" (", f"{peak} (", 1), **ev)


def _check_nonfinite(steps: np.ndarray, loss: np.ndarray, ev_steps: np.ndarray,
                     ev_loss: np.ndarray, gn_steps: np.ndarray, gn: np.ndarray,
                     d: LossAnalysis) -> Finding:
    bad = {name: ~np.isfinite(v) for name, v in
           (("loss", loss), ("eval_loss", ev_loss), ("grad_norm", gn))}
    firsts = [int(s[m][0]) for s, m in zip((steps, ev_steps, gn_steps), bad.values(), strict=True)
              if m.any()]
    counts: dict[str, Any] = {k: int(m.sum()) for k, m in bad.items()}
    d.nonfinite = {**counts, "first_step": min(firsts) if firsts else None}
    total = loss.size + ev_loss.size + gn.size
    if not firsts:
        return passed("L004", f"all {total} loss/eval/grad_norm values finite", **counts)
    parts = ", ".join(f"{n} in {k}" for k, n in counts.items() if n)
    return finding("L004", f"NaN/Inf from step {min(firsts)}: {parts}",
                   hint="lower the learning rate, use bf16 or fp32 instead of fp16, keep "
                        "max_grad_norm=1.0, look for empty or all-masked examples",
                   first_step=min(firsts), **counts)


def _check_zero_grad(steps: np.ndarray, gn: np.ndarray) -> Finding:
    """L010: grad_norm exactly 0 on all (or most) logged steps while a loss is logged."""
    if gn.size == 0:
        return Finding("L010", "skip", "no grad_norm logged")
    zero = gn == 0.0
    n = int(zero.sum())
    ev: dict[str, Any] = {"zero": n, "logged": int(gn.size), "share": n / gn.size}
    if n and n >= ZERO_GRAD_SHARE * gn.size:
        return finding("L010", f"grad_norm is exactly 0 on {n} of {gn.size} logged steps (first "
                               f"at step {int(steps[zero][0])}): the optimizer moves nothing",
                       hint="no trainable parameter gets a gradient: check that the LoRA weights "
                            "require grad (a frozen or merged adapter, prepare_model_for_kbit_"
                            "training after get_peft_model, lr 0) and the labels", **ev)
    return passed("L010", f"grad_norm non-zero on {gn.size - n} of {gn.size} logged steps", **ev)


def _check_zero(steps: np.ndarray, loss: np.ndarray) -> Finding:
    zero = loss == 0.0
    if not zero.any():
        return passed("L007", "no loss exactly 0")
    n = int(zero.sum())
    return finding("L007", f"loss is exactly 0 in {n} of {loss.size} records (first at step "
                           f"{int(steps[zero][0])})",
                   hint="all labels are masked (-100) or the data is degenerate: check the "
                        "completion-only collator / template and truncation",
                   count=n, first_step=int(steps[zero][0]))


def _check_eval(fs: np.ndarray, smooth: np.ndarray, ev_steps: np.ndarray, ev_loss: np.ndarray,
                d: LossAnalysis) -> list[Finding]:
    es, el = _finite(ev_steps, ev_loss)
    if es.size == 0:
        d.eval = None
        return [finding("L008", "no eval loss logged: over/underfitting cannot be judged",
                        hint="pass an eval_dataset and set eval_strategy='steps'"),
                Finding("L005", "skip", "no eval loss to compare with")]
    train_at = np.interp(es, fs, smooth) if fs.size else np.full(es.size, np.nan)
    b = int(np.argmin(el))
    ev = {"records": int(es.size), "first": float(el[0]), "best": float(el[b]),
          "best_step": int(es[b]), "last": float(el[-1]), "last_step": int(es[-1]),
          "gap_first": float(el[0] - train_at[0]), "gap_last": float(el[-1] - train_at[-1]),
          "gap": _sample(es, el - train_at)}
    d.eval = ev
    checks = [passed("L008", f"{es.size} eval loss records")]
    rise = (el[-1] - el[b]) / abs(el[b]) if el[b] else 0.0
    train_fell = bool(train_at[-1] < train_at[b] * (1 - 0.02))
    if es.size >= 3 and b < es.size - 1 and rise > RISE and train_fell:
        checks.append(finding(
            "L005", f"eval loss rose {rise:.0%} from its best {el[b]:.4g} at step {es[b]} to "
                    f"{el[-1]:.4g} at step {es[-1]} while train loss fell {train_at[b]:.4g} → "
                    f"{train_at[-1]:.4g}; eval−train gap {ev['gap_first']:+.3g} → "
                    f"{ev['gap_last']:+.3g}",
            hint=f"use the checkpoint near step {es[b]} (load_best_model_at_end=True), fewer "
                 "epochs, more data or more lora_dropout/weight_decay",
            best_step=int(es[b]), best_eval=float(el[b]), last_eval=float(el[-1]),
            gap_first=ev["gap_first"], gap_last=ev["gap_last"]))
    else:
        checks.append(passed("L005", f"eval loss best {el[b]:.4g} at step {es[b]}, last "
                                     f"{el[-1]:.4g}; eval−train gap {ev['gap_last']:+.3g}",
                             best_eval=float(el[b]), last_eval=float(el[-1])))
    return checks


def _check_steps(log: LossLog, min_steps: int, d: LossAnalysis) -> Finding:
    n = log.steps_done
    extra = []
    if d.epochs is not None:
        extra.append(f"{d.epochs:.3g} epochs")
    if log.tokens_seen:
        extra.append(f"{log.tokens_seen:,} tokens")
    if log.max_steps and n < log.max_steps:
        extra.append(f"stopped before max_steps={log.max_steps}")
    more = "".join(f"; {e}" for e in extra)
    if n >= min_steps:
        return passed("L006", f"{n} optimizer steps (≥ {min_steps}{more})", steps=n)
    return finding("L006", f"only {n} optimizer steps (< {min_steps}{more})",
                   hint="the adapter had little chance to move: add training records, raise "
                        "num_train_epochs, or lower batch size / gradient_accumulation_steps",
                   steps=n, min_steps=min_steps)


def guess_lr_schedule(steps: np.ndarray, lr: np.ndarray,
                      max_steps: int | None = None) -> dict[str, Any] | None:
    """Name the learning-rate schedule seen: [warmup +] constant / linear / cosine / other."""
    steps, lr = _finite(steps, lr)
    if lr.size == 0:
        return None
    p = int(np.argmax(lr))
    peak = float(lr[p])
    warm = p > 0 and lr[0] < 0.95 * peak
    out = {"kind": "unknown", "peak": peak, "peak_step": int(steps[p]), "final": float(lr[-1]),
           "warmup_steps": int(steps[p]) if warm else 0}
    s, y = steps[p:].astype(np.float64), lr[p:]
    if peak <= 0 or np.ptp(y) <= 0.01 * peak:
        kind = "constant" if peak > 0 else "zero"
    elif y.size < 4:
        kind = "decaying"
    else:
        end = float(max_steps) if max_steps and max_steps > s[-1] else float(s[-1])
        x = (s - s[0]) / max(end - s[0], 1.0)
        errs = {name: _lsq_rms(basis, y) / peak
                for name, basis in (("linear", x), ("cosine", np.cos(np.pi * x)))}
        kind = min(errs, key=errs.__getitem__)
        if errs[kind] > 0.02:
            kind = "decaying"
    out["kind"] = f"warmup + {kind}" if warm else kind
    return out


def _lsq_rms(basis: np.ndarray, y: np.ndarray) -> float:
    a = np.column_stack([basis, np.ones_like(basis)])
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return float(np.sqrt(np.mean((a @ coef - y) ** 2)))


def rolling_median(y: np.ndarray, window: int) -> np.ndarray:
    """Centered rolling median (edges mirrored), vectorised."""
    if y.size == 0 or window <= 1:
        return y.astype(np.float64)
    h = window // 2
    padded = np.pad(y, h, mode="reflect" if y.size > h else "edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, window)
    if window % 2 and bool(np.isfinite(y).all()):  # the middle order statistic: 5x np.median
        return np.partition(windows, h, axis=1)[:, h].astype(np.float64)
    return np.median(windows, axis=1)


def _window(n: int) -> int:
    return int(min(max(n // 50, 2), 15)) * 2 + 1 if n >= 10 else 1


def _arrays(series: Series) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(series, ArraySeries):
        return series.steps.copy(), series.values.copy()
    if not series:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    a = np.fromiter(chain.from_iterable(series), dtype=np.float64, count=2 * len(series))
    return a[0::2].astype(np.int64), a[1::2]


def _finite(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(values)
    return steps[ok], values[ok]


def _sample(steps: np.ndarray, *cols: np.ndarray) -> list[list[float]]:
    # spacing >= 1, so the rounded indices are already distinct (np.unique would load np.ma)
    idx = np.linspace(0, steps.size - 1, CURVE_POINTS).round().astype(np.int64) \
        if steps.size > CURVE_POINTS else np.arange(steps.size)
    return np.column_stack([steps[idx], *(c[idx] for c in cols)]).tolist()


def _span(pair: list[int]) -> str:
    return f"{pair[0]}–{pair[1]}" if pair[0] != pair[1] else str(pair[0])


def _finite_or_inf(value: Any) -> float:
    return float(value) if value is not None and math.isfinite(value) else math.inf
