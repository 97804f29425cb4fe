"""Which precision `ftdiag train` computes in: fp32 weights, bf16 autocast where it pays.

On CPU the base and the LoRA weights stay fp32, and so does the optimizer state; with bf16
the Trainer's autocast runs the matmuls in bf16. `auto` takes bf16 only where the start-up
probe (`model.dtype`) finds a bf16 matmul at least 1.5x as fast as fp32's, the gain training
is expected to show; emulated bf16 (AVX2-only CPUs) is 10-100x slower and never chosen.
On CUDA the weights load in the device's half dtype, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ftdiag.errors import FtdiagError
from ftdiag.model.dtype import DtypeChoice, Probe, choose_dtype

if TYPE_CHECKING:
    import torch

TRAIN_BF16_MAX_RATIO = 1 / 1.5  # bf16 autocast when its matmul takes <= 2/3 of fp32's time


@dataclass
class Precision:
    """How a training run computes: the weights' dtype, bf16 autocast on top, and why."""

    weights: torch.dtype
    autocast_bf16: bool
    choice: DtypeChoice

    @property
    def label(self) -> str:
        """What ran, as the report and ftdiag_meta.json say it."""
        if self.autocast_bf16:
            return "bf16 autocast (fp32 weights)"
        return str(self.weights).removeprefix("torch.")


def train_precision(requested: str, device: str, probe: Probe | None = None) -> Precision:
    """The precision for `--dtype requested` on `device` ('cpu' or 'cuda[:N]'); probe: the
    bf16-vs-fp32 matmul timing (default: `model.dtype.probe_matmul`)."""
    import torch

    if device.startswith("cuda"):
        choice = choose_dtype(requested, device)
        return Precision(getattr(torch, choice.dtype), False, choice)
    if requested == "fp16":
        raise FtdiagError("--dtype fp16 trains only on CUDA",
                          hint="on CPU use --dtype bf16 (autocast) or fp32")
    choice = choose_dtype(requested, device, probe, max_ratio=TRAIN_BF16_MAX_RATIO)
    return Precision(torch.float32, choice.dtype == "bfloat16", choice)
