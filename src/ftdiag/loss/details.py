"""The typed details of a loss-report: one run's numbers, or several runs compared."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ftdiag.findings import Details

__all__ = ["LossAnalysis", "LossComparison", "LossRun"]


@dataclass
class LossAnalysis(Details):
    """The numbers of one run's loss log (a loss-report's details; `--json` keys = fields)."""

    label: str
    source: str
    format: str
    notes: list[str]
    config: dict[str, Any]  # hyperparameters the source recorded (learning_rate, lora_r, ...)
    records: int  # train loss records (after merging duplicates)
    steps: int  # optimizer steps reached
    max_steps: int | None
    completed: bool | None  # steps >= max_steps (None without max_steps)
    epochs: float | None
    num_train_epochs: float | None
    tokens_seen: int | None
    duplicates_merged: int
    was_unsorted: bool
    finite_records: int = 0
    start_loss: float | None = None  # median of the first tenth of the finite train losses
    end_loss: float | None = None  # median of the last tenth
    start_steps: list[int] | None = None  # [first, last] step of those windows
    end_steps: list[int] | None = None
    min_loss: float | None = None  # lowest finite raw train loss
    min_loss_step: int | None = None
    relative_decrease: float | None = None  # (start_loss - end_loss) / start_loss
    noise: float | None = None  # relative batch-to-batch noise (MAD of loss/running median - 1)
    decrease_z: float | None = None  # (start - end) / its standard error
    # {"steps": [a, b], "slope", "stderr", "t", "change"}: least squares on the last third
    last_third: dict[str, Any] | None = None
    spikes: list[list[float]] = field(default_factory=list)  # [[step, loss, median]] (first 20)
    nonfinite: dict[str, Any] | None = None  # {"loss", "eval_loss", "grad_norm", "first_step"}
    # None or {"records", "first", "best", "best_step", "last", "last_step", "gap_first",
    # "gap_last", "gap": [[step, eval - smoothed train]]}
    eval: dict[str, Any] | None = None
    lr_schedule: dict[str, Any] | None = None  # {"kind", "peak", "peak_step", "final", ...}
    # {"train": [[step, loss, smoothed], ...], "eval": [[step, loss]], "lr": [[step, lr]]},
    # <= 400 points each
    curves: dict[str, list[list[float]]] = field(
        default_factory=lambda: {"train": [], "eval": [], "lr": []})


@dataclass
class LossRun:
    """One run of a comparison: its numbers, verdict and finding codes."""

    analysis: LossAnalysis
    verdict: str
    codes: list[str]

    @property
    def label(self) -> str:
        return self.analysis.label

    def to_dict(self) -> dict[str, Any]:
        return {**self.analysis.to_dict(), "verdict": self.verdict, "codes": self.codes}


@dataclass
class LossComparison(Details):
    """Several runs side by side (a multi-run loss-report's details)."""

    runs: list[LossRun]
    best_run: str | None
    best_by: str
