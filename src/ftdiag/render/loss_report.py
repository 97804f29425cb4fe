"""Render a loss-report: summary or comparison table, terminal plot (plotext), PNG (matplotlib)."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ftdiag.errors import FtdiagError
from ftdiag.findings import Report
from ftdiag.loss.details import LossAnalysis, LossComparison, LossRun
from ftdiag.render.findings import VERDICT_STYLE, checks_table, print_report, verdict_text

MIN_PLOT_WIDTH = 60
Curve = tuple[str, list[float], list[float]]  # label, steps, values


def print_loss_report(report: Report, console: Console, *, plot: bool = True) -> None:
    """Summary (one run) or comparison (several), the plot if the terminal allows, the checks."""
    d = report.details
    if isinstance(d, LossComparison):
        console.print(comparison_table(d.runs, d.best_run, d.best_by))
        curves = [(("★ " if r.label == d.best_run else "") + r.label,
                   *_xy(r.analysis, "train", 2)) for r in d.runs if _has_curve(r.analysis)]
        _maybe_plot(console, curves, plot, "smoothed train loss per run")
        issues = [c for c in report.checks if c.status != "pass"]
        if issues:
            console.print(checks_table(issues, "findings"))
        console.print(verdict_text(report))
        return
    if isinstance(d, LossAnalysis) and d.records:
        console.print(summary_table(d))
        curves = [("train (smoothed)", *_xy(d, "train", 2))]
        if d.curves["eval"]:
            curves.append(("eval", *_xy(d, "eval", 1)))
        _maybe_plot(console, curves, plot, f"loss — {d.label}")
    print_report(report, console)


def summary_table(d: LossAnalysis) -> Table:
    """Key numbers of one run."""
    t = Table(title=f"loss report: {d.label}", title_justify="left",
              show_header=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    for name, text in summary_rows(d):
        t.add_row(name, text)
    return t


def summary_rows(d: LossAnalysis) -> list[tuple[str, str]]:
    """(name, text) of each key number of one run: the terminal's table, the HTML report's."""
    rows = [("source", f"{d.source} ({d.format})")]
    run = [f"{d.steps} optimizer steps", f"{d.records} loss records"]
    if d.max_steps:
        run[0] += f" of max_steps {d.max_steps}"
    if d.epochs is not None:
        run.append(f"{d.epochs:.3g} epochs")
    if d.tokens_seen:
        run.append(f"{d.tokens_seen:,} tokens")
    rows.append(("run", ", ".join(run)))
    if d.config:
        rows.append(("config", config_text(d.config)))
    if d.start_loss is not None and d.end_loss is not None:
        rows.append(("train loss", f"start {d.start_loss:.4g} → end {d.end_loss:.4g}  "
                                   f"(min {d.min_loss:.4g} at step {d.min_loss_step})"))
        rows.append(("decrease", _pct(d.relative_decrease)))
    lt = d.last_third
    if lt:
        rows.append(("last third", f"steps {lt['steps'][0]}–{lt['steps'][1]}: "
                                   f"{lt['change']:+.1%} (slope {lt['slope']:.3g} ± "
                                   f"{lt['stderr']:.2g} per step)"))
    ev = d.eval
    if ev:
        rows.append(("eval loss", f"first {ev['first']:.4g}, best {ev['best']:.4g} at step "
                                  f"{ev['best_step']}, last {ev['last']:.4g} "
                                  f"({ev['records']} evals)"))
        rows.append(("eval − train", f"{ev['gap_first']:+.3g} → {ev['gap_last']:+.3g}"))
    lr = d.lr_schedule
    if lr:
        warm = f", warmup {lr['warmup_steps']} steps" if lr["warmup_steps"] else ""
        rows.append(("learning rate", f"{lr['kind']}: peak {lr['peak']:.3g} at step "
                                      f"{lr['peak_step']}, final {lr['final']:.3g}{warm}"))
    if d.duplicates_merged or d.was_unsorted:
        rows.append(("cleaned", f"{d.duplicates_merged} duplicate steps merged (latest kept)"
                     + (", steps sorted" if d.was_unsorted else "")))
    rows += [("note", note) for note in d.notes]
    return rows


def config_text(config: dict[str, Any]) -> str:
    """'LLaMA-Factory: lr 0.0002, 3 epochs, LoRA r 8 alpha 16, batch 4 × 2 accumulation'."""
    parts = []
    if "learning_rate" in config:
        parts.append(f"lr {config['learning_rate']:.3g}")
    if "max_steps" in config:  # the Trainer's max_steps overrides num_train_epochs
        parts.append(f"max_steps {config['max_steps']}")
    elif "num_train_epochs" in config:
        parts.append(f"{config['num_train_epochs']:g} epochs")
    lora = [f"{k} {config[key]:g}" for k, key in (("r", "lora_r"), ("alpha", "lora_alpha"))
            if key in config]
    if lora:
        parts.append("LoRA " + " ".join(lora))
    if "batch_size" in config:
        accum = config.get("gradient_accumulation_steps")
        parts.append(f"batch {config['batch_size']}" + (f" × {accum} accumulation"
                                                          if accum and accum != 1 else ""))
    text = ", ".join(parts)
    return f"{config['framework']}: {text}" if config.get("framework") else text


def comparison_table(runs: list[LossRun], best: str | None, best_by: str) -> Table:
    """One row per run; the best run is starred."""
    t = Table(title=f"loss comparison (★ best by {best_by})", title_justify="left")
    for col in ("run", "steps", "start", "end", "min", "decrease", "best eval", "verdict"):
        t.add_column(col, justify="left" if col in ("run", "verdict") else "right", no_wrap=True)
    for r in runs:
        a = r.analysis
        star = "★ " if r.label == best else "  "
        verdict = Text(r.verdict.upper(), style=VERDICT_STYLE[r.verdict])
        if r.codes:
            verdict.append(" " + " ".join(r.codes), style="dim")
        t.add_row(Text(star + r.label, style="bold" if star.strip() else ""), str(a.steps),
                  _num(a.start_loss), _num(a.end_loss), _num(a.min_loss),
                  _pct(a.relative_decrease), _num(a.eval["best"]) if a.eval else "–", verdict)
    return t


def plot_text(curves: list[Curve], width: int, height: int, title: str = "") -> str:
    """A plotext line plot of the curves, as a string with ANSI colours."""
    import plotext as plt

    fig = plt.figure
    fig.clear()
    fig.theme("simple")
    fig.plot_size(width, height)
    fig.title(title)
    fig.label("step", "x")
    xs = [x for _, steps, _ in curves for x in steps]
    ys = [y for _, _, values in curves for y in values]
    for label, steps, values in curves:
        fig.draw(fig.signal(steps, values, marker="braille").label(label).lines())
    if xs and ys:  # bottom left: empty on a falling curve (top right is not, on a flat one)
        fig.legend(x=min(xs), y=min(ys), ha="left", va="bottom", relative=True)
    return str(fig.build().string())


def png_bytes(report: Report) -> bytes:
    """The loss plot (all runs) as PNG bytes."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FtdiagError("--png needs matplotlib",
                          "pip install matplotlib  (or pip install 'ftdiag[plot]')") from None
    d = report.details
    runs = [r.analysis for r in d.runs] if isinstance(d, LossComparison) else \
        [d] if isinstance(d, LossAnalysis) else []
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    best = d.best_run if isinstance(d, LossComparison) else None
    for r in (r for r in runs if _has_curve(r)):
        label = ("★ " if r.label == best else "") + r.label
        many = len(runs) > 1
        if not many:
            ax.plot(*_xy(r, "train", 1), color="tab:blue", alpha=0.25, lw=0.8, label="train")
        line, = ax.plot(*_xy(r, "train", 2), lw=1.8,
                        label=f"{label} train (smoothed)" if many else "train (smoothed)")
        if r.curves["eval"]:
            ax.plot(*_xy(r, "eval", 1), "o--", color=line.get_color(), ms=3,
                    label=f"{label} eval" if many else "eval")
    ax.set_title(f"training loss — verdict {report.verdict.upper()}"
                 + (f" — best run: {best}" if best else ""))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _maybe_plot(console: Console, curves: list[Curve], plot: bool, title: str) -> None:
    if not plot or not console.is_terminal or console.width < MIN_PLOT_WIDTH:
        return
    if not any(len(steps) > 1 for _, steps, _ in curves):
        return
    try:
        text = plot_text(curves, min(console.width, 120), 20, title)
    except ImportError:  # plotext is a dependency, but a broken install should not stop a report
        return
    console.print(Text.from_ansi(text), no_wrap=True, crop=True)


def _has_curve(d: LossAnalysis) -> bool:
    return bool(d.curves["train"])


def _xy(d: LossAnalysis, key: str, col: int) -> tuple[list[float], list[float]]:
    rows = d.curves[key]
    return [r[0] for r in rows], [r[col] for r in rows]


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.4g}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"
