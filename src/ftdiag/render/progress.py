"""A Rich progress display on stderr for multi-stage commands (doctor, demo)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ftdiag.progress import ProgressFn, StageFn
from ftdiag.render.console import err


@contextlib.contextmanager
def stage_progress(enabled: bool = True) -> Iterator[tuple[StageFn, ProgressFn]]:
    """Yield (stage(name), progress(done, total)) callbacks drawing one bar per stage.

    Drawn on a terminal only (elsewhere Rich prints just a final snapshot). When the block
    fails, the bars are erased so the error line is not left under a stage that seems to run.
    """
    if not enabled or not err().is_terminal:
        yield (lambda _n: None), (lambda _d, _t: None)
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err(), transient=False) as bar, _erased_on_error(bar):
        current: list[TaskID] = []

        def finish_current() -> None:
            if current:
                total = next(t.total for t in bar.tasks if t.id == current[-1]) or 1
                bar.update(current[-1], total=total, completed=total)

        def stage(name: str) -> None:
            finish_current()
            current.append(bar.add_task(name, total=None))

        def progress(done: int, total: int) -> None:
            if current:
                bar.update(current[-1], completed=done, total=total)

        yield stage, progress
        finish_current()


@contextlib.contextmanager
def _erased_on_error(bar: Progress) -> Iterator[None]:
    try:
        yield
    except BaseException:
        bar.live.transient = True
        raise
