"""Trainer callbacks of the train recipe: live progress, the step-1 LoRA gradient check, Ctrl-C."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import FrameType
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ftdiag.errors import FtdiagError
from ftdiag.findings import Finding
from ftdiag.train_checks import gradient_check, lora_grad_stats


@dataclass
class StepInfo:
    """What the progress bar shows after each optimizer step."""

    step: int
    max_steps: int
    epoch: float
    loss: float | None
    eval_loss: float | None
    tokens: int
    tokens_per_s: float
    elapsed: float


StepFn = Callable[[StepInfo], None]  # one optimizer step done


class ProgressCallback(TrainerCallback):
    """Calls `fn(StepInfo)` after every optimizer step (rank 0 only)."""

    def __init__(self, fn: StepFn) -> None:
        self.fn = fn
        self.start = time.perf_counter()
        self.tokens0 = 0
        self.loss: float | None = None
        self.eval_loss: float | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, **kw: Any) -> None:
        self.start = time.perf_counter()
        self.tokens0 = state.num_input_tokens_seen

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kw: Any) -> None:
        logs = logs or {}
        if "loss" in logs:
            self.loss = float(logs["loss"])
        if "eval_loss" in logs:
            self.eval_loss = float(logs["eval_loss"])
        self._emit(state)

    def on_step_end(self, args: TrainingArguments, state: TrainerState,
                    control: TrainerControl, **kw: Any) -> None:
        self._emit(state)

    def _emit(self, state: TrainerState) -> None:
        if not state.is_world_process_zero:
            return
        elapsed = time.perf_counter() - self.start
        tokens = state.num_input_tokens_seen - self.tokens0
        self.fn(StepInfo(state.global_step, state.max_steps, float(state.epoch or 0.0),
                         self.loss, self.eval_loss, state.num_input_tokens_seen,
                         tokens / elapsed if elapsed > 0 else 0.0, elapsed))


class NoLoraGradientError(FtdiagError):
    """Raised after the first backward pass when no LoRA parameter received a gradient."""


class GradCheckCallback(TrainerCallback):
    """Fail fast when, after step 1, no LoRA parameter has a non-zero gradient (L009)."""

    def __init__(self) -> None:
        self.stats: dict[str, Any] | None = None
        self.check: Finding | None = None

    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState,
                              control: TrainerControl, model: Any = None, **kw: Any) -> None:
        if self.stats is not None or model is None:
            return
        stats = lora_grad_stats(model)
        self.stats = asdict(stats)
        self.check = check = gradient_check(stats)
        if check.status == "fail":
            raise NoLoraGradientError(check.message, hint=check.hint)


class InterruptCallback(TrainerCallback):
    """First Ctrl-C: save a checkpoint at the end of the current step and stop; second: abort."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            self.uninstall()
            raise KeyboardInterrupt
        self.requested = True

    def on_step_end(self, args: TrainingArguments, state: TrainerState,
                    control: TrainerControl, **kw: Any) -> TrainerControl:
        if self.requested:
            control.should_save = True
            control.should_training_stop = True
        return control


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after saving a resumable checkpoint."""

    def __init__(self, checkpoint: str | None) -> None:
        super().__init__(checkpoint)
        self.checkpoint = checkpoint
