"""Rich output of `ftdiag train`: the data table, a live progress bar and the summary."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ftdiag.findings import Finding
from ftdiag.render.console import err
from ftdiag.render.findings import checks_table, verdict_text
from ftdiag.training.callbacks import StepFn, StepInfo
from ftdiag.training.data import DataSummary
from ftdiag.training.recipe import TrainResult

REASON_TEXT = {"empty-title": "empty title", "empty-description": "empty description",
               "duplicate": "exact duplicate", "truncated": "description truncated away"}


def data_table(s: DataSummary) -> Table:
    """Records read → used → dropped (by reason) → kept → train/eval."""
    t = Table()
    t.add_column("records", no_wrap=True)
    t.add_column("count", justify="right")
    t.add_row("read from file", str(s.read))
    used = f"used (--records {s.requested})" if s.requested is not None else "used (all)"
    t.add_row(used, str(s.used))
    for reason, n in s.dropped.items():
        t.add_row(f"  dropped: {REASON_TEXT.get(reason, reason)}", str(n),
                  style="yellow" if n else "dim")
    t.add_row("kept", str(s.kept), style="bold")
    t.add_row("  train / eval (split by title)", f"{s.train_size} / {s.eval_size}")
    t.add_row("  train tokens / trained label tokens",
              f"{s.train_tokens} / {s.trained_label_tokens}")
    for note in s.notes:
        t.add_row(f"[yellow]note:[/] {note}", "")
    return t


def print_data(summary: DataSummary, checks: list[Finding], console: Console) -> None:
    """The data file, its table and the D0xx checks, printed before training starts.

    The path is a line of its own: as the table's title it would wrap at the table's width."""
    console.print(f"data: {summary.path}", highlight=False, soft_wrap=True)
    console.print(data_table(summary))
    console.print(checks_table(checks, title="data checks"))


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def summary_table(r: TrainResult) -> Table:
    """Steps, tokens, time, throughput and losses of the finished run."""
    t = Table(title="training summary", title_justify="left")
    t.add_column("", no_wrap=True)
    t.add_column("value", justify="right")
    t.add_row("optimizer steps", str(r.steps))
    t.add_row("tokens (non-pad)", str(r.tokens))
    t.add_row("time", f"{r.seconds:.1f} s")
    t.add_row("tokens/s", f"{r.tokens_per_s:.0f}")
    if r.precision:
        t.add_row("precision", r.precision)
    t.add_row("first train loss", _fmt(r.first_loss))
    t.add_row("last train loss", _fmt(r.last_loss))
    drop = (1 - r.last_loss / r.first_loss) * 100 if r.first_loss and r.first_loss > 0 else None
    t.add_row("train loss change", "–" if drop is None or math.isnan(drop) else f"-{drop:.1f}%"
              if drop >= 0 else f"+{-drop:.1f}%")
    t.add_row("best eval loss", _fmt(r.best_eval_loss))
    if r.resumed_from:
        t.add_row("resumed from", r.resumed_from)
    t.add_row("adapter", str(r.adapter_dir))
    return t


def print_train(r: TrainResult, console: Console) -> None:
    """Summary table, then the static adapter checks and the verdict."""
    console.print(summary_table(r))
    if r.precision_reason:
        console.print(f"[dim]precision: {r.precision_reason}[/]", highlight=False)
    static = [c for c in r.report.checks if c.code.startswith("A")]
    if static:
        console.print(checks_table(static, title="static adapter check (A001–A015)"))
    elif "S" in r.report.layers_skipped:
        console.print(f"[dim]static check skipped: {r.report.layers_skipped['S']}[/]")
    console.print(verdict_text(r.report))


@contextlib.contextmanager
def train_progress(enabled: bool = True) -> Iterator[StepFn]:
    """A progress bar on stderr with live loss, tokens/s and ETA; yields the update callback."""
    if not enabled:
        yield lambda _info: None
        return
    columns = (TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
               TextColumn("ETA {task.fields[eta]}"))
    bar = Progress(*columns, console=err(), transient=False)
    task = bar.add_task("train", total=None, stats="", eta="?")

    def update(info: StepInfo) -> None:
        if not bar.live.is_started:  # only once training runs: errors stay one line
            bar.start()
        rate = info.elapsed / info.step if info.step else 0.0
        left = max(info.max_steps - info.step, 0) * rate
        stats = f"loss {_fmt(info.loss)}"
        if info.eval_loss is not None:
            stats += f"  eval {_fmt(info.eval_loss)}"
        stats += f"  {info.tokens_per_s:,.0f} tok/s"
        eta = f"{int(left // 60)}:{int(left % 60):02d}" if info.step else "?"
        bar.update(task, completed=info.step, total=info.max_steps or None, stats=stats, eta=eta)

    try:
        yield update
    finally:
        if bar.live.is_started:
            bar.stop()
