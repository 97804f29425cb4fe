"""ab-test and doctor across processes (torchrun / accelerate launch): shards of one workload.

Every rank loads its own model and runs the same checks; generation work is split by title.
`split` gives each rank its slice of a batch, `gather` brings every rank's part back in order to
all ranks (gloo, pickled objects), so each computes the same report and rank 0 alone prints it.
Outside a launcher (no WORLD_SIZE, or 1) everything here is a no-op.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

T = TypeVar("T")


def launched() -> bool:
    """True when started by a launcher with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def init() -> None:
    """Join the launcher's process group (gloo: only Python objects travel), once.

    On CUDA each rank takes the device of its LOCAL_RANK, so "cuda" means that device.
    """
    if not launched():
        return
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")


def world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group; (0, 1) when there is none."""
    if not launched():
        return 0, 1
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def is_main() -> bool:
    """The rank that prints and writes files (always True in one process)."""
    return world()[0] == 0


def split(items: list[T], rank: int, size: int) -> list[T]:
    """This rank's contiguous slice of `items` (sizes differ by at most one, in rank order)."""
    q, r = divmod(len(items), size)
    start = rank * q + min(rank, r)
    return items[start:start + q + (1 if rank < r else 0)]


def gather(part: list[T]) -> list[T]:
    """Every rank's `part` concatenated in rank order, on every rank (one process: `part`)."""
    size = world()[1]
    if size == 1:
        return part
    import torch.distributed as dist

    parts: list[Any] = [None] * size
    dist.all_gather_object(parts, part)
    return [x for p in parts for x in p]


def finish() -> None:
    """Leave the process group (end of a launched command)."""
    if world()[1] > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
