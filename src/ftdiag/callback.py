"""`FtdiagCallback`: ftdiag's training checks inside your own TRL / transformers / Unsloth script.

    from ftdiag import FtdiagCallback
    SFTTrainer(..., callbacks=[FtdiagCallback()])

Step 1: LoRA gradients (L009) — a failing check stops training (or warns, `on_error="warn"`).
First batches: the labels the model is fed (D002 trainable labels, D003 EOS trained).
Each save: the static adapter check on `checkpoint-N` (A0xx).
Every check is printed as it comes and recorded, with the run's evidence, in
`output_dir/ftdiag_meta.json`, so `loss-report`, `check-adapter` and `doctor` read the run folder.
"""

from __future__ import annotations

from typing import Literal

from ftdiag.render.callback import print_checks
from ftdiag.training.callbacks import FtdiagCheckError, FtdiagChecks, Show

__all__ = ["FtdiagCallback", "FtdiagCheckError"]


class FtdiagCallback(FtdiagChecks):
    """Fail fast on LoRA runs that cannot learn; print each check, record the evidence."""

    def __init__(self, on_error: Literal["raise", "warn"] = "raise", *, data_batches: int = 8,
                 check_saves: bool = True, template: str | None = None,
                 show: Show | None = None) -> None:
        super().__init__(on_error, data_batches=data_batches, check_saves=check_saves,
                         template=template, show=show or print_checks)
