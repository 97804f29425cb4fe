"""Read safetensors files with numpy only (bf16 included): no torch import on the static path."""

from __future__ import annotations

import math
import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ftdiag.errors import FtdiagError
from ftdiag.safeio import parse_json

NP_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
             "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
             "BF16": np.uint16}
# Bit patterns at or above this (sign masked off) are Inf/NaN: (unsigned view, mask, limit).
FLOAT_BITS = {"BF16": (np.uint16, 0x7FFF, 0x7F80), "F16": (np.uint16, 0x7FFF, 0x7C00),
              "F32": (np.uint32, 0x7FFF_FFFF, 0x7F80_0000),
              "F64": (np.uint64, 0x7FFF_FFFF_FFFF_FFFF, 0x7FF0_0000_0000_0000)}
CHUNK = 1 << 24  # elements per finite-check pass (bounds the temporary to 32-64 MB)
MAX_HEADER = 100 * 1024 * 1024
MAX_DIMS = 64  # numpy's limit; a longer shape could only be built to stall the size product


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's dtype, shape and byte range inside the data section."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass
class TensorFile:
    """The header of a safetensors file; tensors are read on demand through a memory map."""

    path: Path
    tensors: dict[str, TensorInfo]
    data_offset: int

    _map: mmap.mmap | None = field(default=None, repr=False, compare=False)

    def raw(self, name: str) -> np.ndarray:
        """One tensor as stored (BF16 as uint16), a zero-copy view of the memory map."""
        info = self.tensors[name]
        if info.dtype not in NP_DTYPES:
            raise FtdiagError(f"unsupported tensor dtype {info.dtype}")
        if self._map is None:
            with self.path.open("rb") as fh:
                self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        dtype = np.dtype(NP_DTYPES[info.dtype])
        count = (info.end - info.start) // dtype.itemsize
        return np.frombuffer(self._map, dtype=dtype, count=count,
                             offset=self.data_offset + info.start).reshape(info.shape)

    def release(self, name: str) -> None:
        """Drop the pages of a tensor already reduced from this process's resident set.

        The map is shared and read-only, so a later access reads the pages back from the page
        cache: views handed out stay valid.
        """
        info = self.tensors[name]
        if self._map is None or not hasattr(mmap, "MADV_DONTNEED") or info.end <= info.start:
            return
        start = (self.data_offset + info.start) // mmap.PAGESIZE * mmap.PAGESIZE
        self._map.madvise(mmap.MADV_DONTNEED, start, self.data_offset + info.end - start)

    def read(self, names: list[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """(name, float32 array) for `names` (default all), one at a time; BF16/F16 are widened.

        Pages of a tensor leave the resident set once the caller asks for the next one.
        """
        for name in list(self.tensors) if names is None else names:
            yield name, widen(self.raw(name), self.tensors[name].dtype)
            self.release(name)

    def finite(self, name: str) -> bool:
        """Whether a tensor holds no NaN/Inf, from its bit patterns (no float copy)."""
        raw, dtype = self.raw(name).reshape(-1), self.tensors[name].dtype
        if dtype not in FLOAT_BITS:
            return True
        utype, mask, limit = FLOAT_BITS[dtype]
        bits = raw.view(utype)
        return all(int(np.bitwise_and(bits[i:i + CHUNK], mask).max(initial=0)) < limit
                   for i in range(0, bits.size, CHUNK))


def widen(arr: np.ndarray, dtype: str) -> np.ndarray:
    """A tensor as stored (`raw`) as float32: BF16 bits shifted in one pass, others cast."""
    if dtype == "BF16" and arr.dtype == np.uint16:
        out = np.empty(arr.shape, np.uint32)
        np.left_shift(arr, np.uint32(16), out=out)
        return out.view(np.float32)
    return arr.astype(np.float32, copy=False)


def open_safetensors(path: Path) -> TensorFile:
    """Parse and validate the header; a truncated, corrupt or lying file is a user error."""
    size = path.stat().st_size
    try:
        with path.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > min(size - 8, MAX_HEADER):
                raise ValueError(f"header length {n} exceeds the file size {size}")
            raw = fh.read(n)
    except (OSError, ValueError, struct.error) as exc:
        raise FtdiagError(f"cannot read {path} (corrupt or truncated?): {exc}") from exc
    header = parse_json(raw, path)
    if not isinstance(header, dict):
        raise FtdiagError(f"cannot read {path}: the header is not a JSON object")
    tensors = {name: _tensor_info(path, name, meta) for name, meta in header.items()
               if name != "__metadata__"}
    data = size - 8 - n
    for name, info in tensors.items():
        if info.end > data or info.start > info.end:
            raise FtdiagError(f"cannot read {path}: tensor {name} runs past the end of the file "
                              f"(truncated?)")
        itemsize = np.dtype(NP_DTYPES.get(info.dtype, np.uint8)).itemsize
        if info.end - info.start != math.prod(info.shape) * itemsize:
            raise FtdiagError(f"cannot read {path}: tensor {name} has an inconsistent size")
    return TensorFile(path, tensors, 8 + n)


def _tensor_info(path: Path, name: str, meta: Any) -> TensorInfo:
    """One header entry, its types checked: dtype a string, shape and offsets natural numbers."""
    def natural(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and x >= 0

    try:
        dtype, shape, offsets = meta["dtype"], meta["shape"], meta["data_offsets"]
        ok = isinstance(dtype, str) and isinstance(shape, list) and isinstance(offsets, list) \
            and len(offsets) == 2 and len(shape) <= MAX_DIMS \
            and all(map(natural, [*shape, *offsets]))
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise FtdiagError(f"cannot read {path} (corrupt?): tensor {name[:100]!r} has no valid "
                          f"dtype, shape and data_offsets")
    return TensorInfo(dtype, tuple(shape), offsets[0], offsets[1])
