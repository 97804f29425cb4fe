"""The "where the time went" line a command prints after its report (timing.Clock)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ftdiag.timing import LABELS

if TYPE_CHECKING:
    from rich.console import Console

    from ftdiag.findings import Report

Render = Callable[["Report", "Console"], None]


def timing_text(snapshot: dict[str, Any]) -> str:
    """'time: W s (since …): part s · part s · … · other s', parts that took time only."""
    parts = [(LABELS.get(k, k), v) for k, v in snapshot["parts_s"].items() if v >= 0.005]
    parts.append(("other", snapshot["other_s"]))
    body = " · ".join(f"{label} {value:.2f}" for label, value in parts)
    return f"time: {snapshot['wall_s']:.1f} s since {snapshot['since']} = {body} (s)"


def print_timing(clock: Any, console: Console) -> None:
    """The clock's snapshot, taken now (the terminal report is printed by then)."""
    from rich.text import Text

    if clock is not None:
        console.print(Text(timing_text(clock.snapshot()), style="dim"), soft_wrap=True)


def with_timing(render: Render, clock: Any) -> Render:
    """`render`, then the time line (a command's terminal output)."""

    def both(report: Report, console: Console) -> None:
        render(report, console)
        print_timing(clock, console)

    return both
