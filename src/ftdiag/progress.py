"""Callback types a long library call reports through (the CLI draws them, tests record them)."""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[int, int], None]  # (done, total) units of work
StageFn = Callable[[str], None]  # the name of the stage starting now
