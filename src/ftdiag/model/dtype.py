"""Which dtype a command computes in: `--dtype auto` measures whether the CPU has native bf16.

On CPU, bf16 pays only where the hardware computes it (AVX512-BF16, AMX): there a bf16 matmul
is at least as fast as fp32 and reads half the bytes; elsewhere PyTorch emulates it, 10-100x
slower. Flags can lie under a hypervisor, so `auto` times one small matmul in each dtype.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ftdiag.errors import FtdiagError

if TYPE_CHECKING:
    import torch

CHOICES = ("auto", "fp32", "bf16", "fp16")
NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
BF16_MAX_RATIO = 1.0  # bf16 chosen when its matmul takes at most this share of fp32's time
PROBE_SHAPE = (16, 512)  # rows x width: (16, 512) @ (512, 512), about 0.3 ms in fp32 on 1 core
PROBE_REPEATS = 3

Probe = Callable[[], dict[str, float]]


@dataclass
class DtypeChoice:
    """The dtype both arms run in, why, and the probe's timings (ms) when one ran."""

    dtype: str  # "float32", "bfloat16", "float16"
    reason: str
    probe_ms: dict[str, float] = field(default_factory=dict)

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.dtype)  # type: ignore[no-any-return]


def probe_matmul() -> dict[str, float]:
    """Best-of times (ms) of one (16x512)@(512x512) matmul in fp32 and in bf16, on one thread.

    One thread: the per-core arithmetic is what differs, and a busy machine's thread hand-offs
    would otherwise swamp a sub-millisecond product. A bf16 product already 2x slower than fp32
    ends the probe (emulated bf16 can take tens of ms).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out: dict[str, float] = {}
        for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            x = torch.randn(PROBE_SHAPE, dtype=dt)
            w = torch.randn(PROBE_SHAPE[1], PROBE_SHAPE[1], dtype=dt)
            torch.mm(x, w)  # warm-up: kernel choice, first-touch
            best = float("inf")
            for _ in range(PROBE_REPEATS):
                t = time.perf_counter()
                torch.mm(x, w)
                best = min(best, time.perf_counter() - t)
                if name == "bf16" and best > 2 * out["fp32"] / 1e3:
                    break
            out[name] = best * 1e3
        return out
    finally:
        torch.set_num_threads(threads)


def check_choice(requested: str) -> None:
    """An unknown --dtype is one line and exit 2, before anything runs."""
    if requested not in CHOICES:
        raise FtdiagError(f"unknown --dtype {requested!r}", hint=f"one of {', '.join(CHOICES)}")


def choose_dtype(requested: str = "auto", device: str = "cpu", probe: Probe | None = None,
                 max_ratio: float = BF16_MAX_RATIO) -> DtypeChoice:
    """The dtype for `requested` ('auto' or a name in CHOICES) on `device`, with the reason.

    max_ratio: on CPU, auto takes bf16 when its matmul needs at most this share of fp32's time.
    """
    check_choice(requested)
    if requested != "auto":
        return DtypeChoice(NAMES[requested], f"asked for (--dtype {requested})")
    if device.startswith("cuda"):  # the loader's own CUDA rule: bf16 where supported, else fp16
        from ftdiag.model.load import pick_device_dtype

        dtype = str(pick_device_dtype(device)[1]).removeprefix("torch.")
        support = "with" if dtype == "bfloat16" else "without"
        return DtypeChoice(dtype, f"auto: CUDA device {support} bf16 support")
    ms = (probe or probe_matmul)()
    ratio = ms["bf16"] / ms["fp32"] if ms["fp32"] > 0 else float("inf")
    timings = f"bf16 matmul {ms['bf16']:.2f} ms vs fp32 {ms['fp32']:.2f} ms"
    if ratio <= max_ratio:
        return DtypeChoice("bfloat16", f"auto: this CPU computes bf16 natively ({timings})", ms)
    if ratio <= 1.0:
        return DtypeChoice("float32", f"auto: bf16 is native on this CPU but not fast enough "
                           f"here ({timings}; needs <= {max_ratio:.2f}x fp32's time)", ms)
    return DtypeChoice("float32", f"auto: no native bf16 on this CPU ({timings}, "
                       f"{ratio:.1f}x slower)", ms)


def model_dtype(model: Any) -> DtypeChoice:
    """The dtype of a model the caller loaded (doctor, library use): what ran, not chosen here."""
    param = next(model.parameters(), None)
    name = str(param.dtype).removeprefix("torch.") if param is not None else "float32"
    return DtypeChoice(name, "the loaded model's own dtype")
