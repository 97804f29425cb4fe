"""Read safetensors files with numpy only (bf16 included): no torch import on the static path."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ftdiag.errors import FtdiagError

NP_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
             "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
             "BF16": np.uint16}
MAX_HEADER = 100 * 1024 * 1024


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

    def read(self, names: list[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """(name, float32 array) for `names` (default all); BF16/F16 are widened."""
        names = list(self.tensors) if names is None else names
        if not names:
            return
        mm = np.memmap(self.path, dtype=np.uint8, mode="r")
        for name in names:
            info = self.tensors[name]
            raw = mm[self.data_offset + info.start:self.data_offset + info.end]
            yield name, to_float32(raw, info)


def to_float32(raw: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Bytes of one tensor as a float32 array of its shape."""
    if info.dtype not in NP_DTYPES:
        raise FtdiagError(f"unsupported tensor dtype {info.dtype}")
    arr: np.ndarray = raw.view(NP_DTYPES[info.dtype])
    if info.dtype == "BF16":  # one pass: widen and shift into the float32 bit pattern
        arr = np.left_shift(arr, 16, dtype=np.uint32).view(np.float32)
    return arr.astype(np.float32, copy=False).reshape(info.shape)


def open_safetensors(path: Path) -> TensorFile:
    """Parse and validate the header; a truncated or corrupt file is a user error."""
    size = path.stat().st_size
    try:
        with path.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > min(size - 8, MAX_HEADER):
                raise ValueError(f"header length {n} exceeds the file size {size}")
            header = json.loads(fh.read(n))
        tensors: dict[str, TensorInfo] = {}
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            start, end = meta["data_offsets"]
            tensors[name] = TensorInfo(meta["dtype"], tuple(meta["shape"]), int(start), int(end))
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise FtdiagError(f"cannot read {path} (corrupt or truncated?): {exc}") from exc
    data = size - 8 - n
    for name, info in tensors.items():
        if info.end > data or info.start > info.end:
            raise FtdiagError(f"cannot read {path}: tensor {name} runs past the end of the file "
                              f"(truncated?)")
        itemsize = np.dtype(NP_DTYPES.get(info.dtype, np.uint8)).itemsize
        if info.end - info.start != int(np.prod(info.shape, dtype=np.int64)) * itemsize:
            raise FtdiagError(f"cannot read {path}: tensor {name} has an inconsistent size")
    return TensorFile(path, tensors, 8 + n)
