"""A cheap, dtype-independent fingerprint of a model's weights, read lazily from safetensors."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from ftdiag.adapters.tensorfile import NP_DTYPES, TensorFile, TensorInfo, open_safetensors
from ftdiag.errors import FtdiagError

log = logging.getLogger(__name__)

SAMPLED = 3  # tensors hashed: first, middle and last matrix by name
ELEMENTS = 4096  # values read from the middle of each


def weights_fingerprint(model_dir: str | Path) -> str | None:
    """'sha256:<16 hex>' of the tensor names/shapes and a few values, or None without safetensors.

    Values are rounded to bfloat16 first, so an fp32 and a bf16 copy of one model agree, while
    two seeds of one architecture or an Instruct and a base model do not. Reads a few KiB.
    """
    files = _tensor_files(Path(model_dir).expanduser())
    if not files:
        return None
    index: dict[str, tuple[TensorFile, TensorInfo]] = {}
    for tf in files:
        index.update({name: (tf, info) for name, info in tf.tensors.items()})
    h = hashlib.sha256()
    for name in sorted(index):
        h.update(f"{name}:{list(index[name][1].shape)};".encode())
    matrices = sorted(n for n, (_, info) in index.items() if len(info.shape) >= 2)
    if matrices:
        picks = sorted({0, len(matrices) // 2, len(matrices) - 1})[:SAMPLED]
        for i in picks:
            tf, info = index[matrices[i]]
            h.update(_sample(tf, info).tobytes())
    return "sha256:" + h.hexdigest()[:16]


def _tensor_files(model_dir: Path) -> list[TensorFile]:
    """Headers of the model's safetensors files (single file or shards)."""
    index = model_dir / "model.safetensors.index.json"
    try:
        if index.is_file():
            shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
                         .values())
            return [open_safetensors(model_dir / s) for s in sorted(shards)]
        single = model_dir / "model.safetensors"
        return [open_safetensors(single)] if single.is_file() else []
    except (OSError, ValueError, FtdiagError) as exc:
        log.debug("no fingerprint for %s: %s", model_dir, exc)
        return []


def _sample(tf: TensorFile, info: TensorInfo) -> np.ndarray:
    """Up to ELEMENTS values from the middle of a tensor, as bfloat16 bit patterns."""
    if info.dtype not in NP_DTYPES or info.dtype in ("BOOL",):
        return np.zeros(0, np.uint16)
    dtype = np.dtype(NP_DTYPES[info.dtype])
    n = (info.end - info.start) // dtype.itemsize
    first = max(0, n // 2 - ELEMENTS // 2)
    count = min(ELEMENTS, n)
    start = tf.data_offset + info.start + first * dtype.itemsize
    mm = np.memmap(tf.path, dtype=np.uint8, mode="r", offset=start, shape=(count * dtype.itemsize,))
    raw = np.array(mm).view(dtype)
    if info.dtype == "BF16":
        return raw.astype(np.uint16)
    bits = raw.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest even bfloat16
    return rounded.astype(np.uint16)
