"""Where a command's time goes: disjoint named parts on one clock (`--json` details.timing).

A CLI command starts the clock; library functions mark their part with `phase` or `timed`,
which cost nothing when no clock runs (a library call). Parts are exclusive: a phase inside
another (the R004 guard inside the runtime checks) is counted once, in the inner part, so the
parts never add up to more than the wall time; what no part claims is `other`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

PARTS = ("startup", "imports", "static_checks", "load", "runtime_checks", "r004_guard",
         "prefill", "decode", "reference_nll", "render")
LABELS = {"startup": "start-up (interpreter, CLI)", "imports": "imports (torch, transformers, "
          "peft)", "static_checks": "static checks", "load": "load (base, adapter)",
          "runtime_checks": "runtime checks", "r004_guard": "R004 guard (base arm probe)",
          "prefill": "prefill", "decode": "decode", "reference_nll": "reference NLL",
          "render": "render"}


@dataclass
class Clock:
    """One command's parts, in seconds; wall time counts from `origin` (perf_counter)."""

    origin: float
    since: str  # "process start" or "command start"
    parts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 0.0))
    render_from: float | None = None
    _stack: list[list[float]] = field(default_factory=list)  # [start, seconds of inner phases]

    def add(self, name: str, seconds: float) -> None:
        self.parts[name] = self.parts.get(name, 0.0) + max(0.0, seconds)

    def start_render(self) -> None:
        """From now until the report is turned into text (JSON or terminal) is `render`."""
        self.render_from = time.perf_counter()

    def snapshot(self) -> dict[str, Any]:
        """wall_s, parts_s (every PARTS key), other_s: taken now (rendering ends about now)."""
        now = time.perf_counter()
        parts = dict(self.parts)
        if self.render_from is not None:
            parts["render"] = parts.get("render", 0.0) + now - self.render_from
        wall = now - self.origin
        other = wall - sum(parts.values())
        return {"since": self.since, "wall_s": round(wall, 4),
                "parts_s": {k: round(v, 4) for k, v in parts.items()},
                "other_s": round(max(0.0, other), 4)}

    def to_dict(self) -> dict[str, Any]:
        return self.snapshot()


_CLOCK: Clock | None = None
_FROM_PROCESS = False


def process_age() -> float | None:
    """Seconds since this process started (Linux /proc, 10 ms steps); None where unknown."""
    try:
        stat = Path("/proc/self/stat").read_text(encoding="ascii")
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: starttime, in clock ticks
        uptime = float(Path("/proc/uptime").read_text(encoding="ascii").split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def count_from_process_start() -> None:
    """The `ftdiag` executable: wall time and `startup` count from the process's start."""
    global _FROM_PROCESS
    _FROM_PROCESS = True


def start() -> Clock:
    """A fresh clock for this command (replacing any earlier one), made current."""
    global _CLOCK
    now = time.perf_counter()
    age = process_age() if _FROM_PROCESS else None
    clock = Clock(now - age, "process start") if age is not None else Clock(now, "command start")
    clock.add("startup", now - clock.origin)
    _CLOCK = clock
    return clock


def current() -> Clock | None:
    return _CLOCK


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Count the block's time, less its inner phases', as part `name` (no clock: nothing)."""
    clock = _CLOCK
    if clock is None:
        yield
        return
    frame = [time.perf_counter(), 0.0]
    clock._stack.append(frame)
    try:
        yield
    finally:
        clock._stack.pop()
        spent = time.perf_counter() - frame[0]
        clock.add(name, spent - frame[1])
        if clock._stack:
            clock._stack[-1][1] += spent


def timed(name: str) -> Callable[[F], F]:
    """Decorator: every call of the function is part `name`."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with phase(name):
                return fn(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap

