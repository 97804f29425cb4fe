"""Read single module weights from a saved model, lazily: a safetensors folder or a merged GGUF.

Both readers return the weight in the Hugging Face layout (GGUF q/k rows un-permuted) as
float32, with the dtype it was saved in and, for quantized GGUF tensors, half the quantization
step of each element's block (what an update must exceed to survive the rounding).
"""

from __future__ import annotations

import functools
import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ftdiag.adapters.tensorfile import NP_DTYPES, TensorFile, open_safetensors
from ftdiag.errors import FtdiagError
from ftdiag.safeio import read_json_object

EXP_MASK = 0x7F800000
MANTISSA_BITS = {"F32": 23, "F16": 10, "BF16": 7, "F64": 52}
# bits per weight and the block a scale covers, for the quantization step estimate
QUANT_BITS = {"Q4_0": (4, 32), "Q4_1": (4, 32), "Q5_0": (5, 32), "Q5_1": (5, 32),
              "Q8_0": (8, 32), "Q8_1": (8, 32), "Q2_K": (2, 16), "Q3_K": (3, 16),
              "Q4_K": (4, 32), "Q5_K": (5, 32), "Q6_K": (6, 16), "Q8_K": (8, 256),
              "IQ4_NL": (4, 32), "IQ4_XS": (4, 32), "TQ1_0": (2, 256), "TQ2_0": (2, 256)}
MAX_BLOCKS = 1024  # layers mapped to llama.cpp names (about 1 ms each)
MAX_GGUF_ITEMS = 4_000_000  # metadata values, vocabulary included (large vocabularies: ~1M)
# GGUF value type -> bytes, for the fixed-size types (8 is a string, 9 an array)
GGUF_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
NUMERIC_FIELDS = ("adapter.lora.alpha", ".attention.head_count", ".attention.head_count_kv",
                  ".block_count", "general.alignment")


@dataclass
class SavedWeight:
    """One module's weight as saved (HF layout): stored array, dtype, rounding half-step.

    `raw` holds float32 values, or the stored half-precision array (BF16 as its uint16 bits,
    memory-mapped); `rows()` widens only the rows asked for, so big tensors go block by block.
    """

    raw: np.ndarray
    dtype: str
    half_step: np.ndarray | None = None  # None: derive from the float dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.raw.shape)

    def rows(self, index: slice | np.ndarray = slice(None)) -> np.ndarray:
        """float32 values of the selected rows."""
        part = self.raw[index]
        if part.dtype == np.uint16:  # bfloat16 bits
            return np.left_shift(part, 16, dtype=np.uint32).view(np.float32)
        return np.asarray(part, dtype=np.float32)

    @property
    def values(self) -> np.ndarray:
        return self.rows()

    def sample(self, rows: np.ndarray) -> SavedWeight:
        """The selected rows as float32 (with their half-steps)."""
        half = self.half_step[rows] if self.half_step is not None else None
        return SavedWeight(self.rows(rows), self.dtype, half)

    def lost_and_noise(self, update: np.ndarray) -> tuple[int, float]:
        """(elements of `update` below half a ULP / quant step of W, Σ (2h)²/12 over W).

        For float dtypes both come from the exponent bits (h is a power of two), without a
        float pass; `update` is overwritten.
        """
        if self.half_step is not None:
            h = self.half_step.ravel()
            np.abs(update, out=update)
            return int(np.count_nonzero(update.ravel() < h)), float(np.dot(h, h)) / 3.0
        bits = MANTISSA_BITS.get(self.dtype, 23)
        low = (102 if self.dtype == "F16" else 1) << 23  # half the subnormal spacing (F16)
        hb = np.bitwise_and(self.values.view(np.int32), np.int32(EXP_MASK))
        hb -= np.int32((bits + 1) << 23)
        np.maximum(hb, np.int32(low), out=hb)
        ub = update.view(np.int32)
        np.bitwise_and(ub, np.int32(EXP_MASK), out=ub)
        lost = int(np.count_nonzero(ub < hb))
        h = hb.view(np.float32).ravel()
        return lost, float(np.dot(h, h)) / 3.0


class WeightSource(Protocol):
    """Something that holds module weights by Hugging Face module name."""

    path: Path

    def read(self, module: str) -> SavedWeight | None: ...


def weight_key(module: str, keys: dict[str, Any]) -> str | None:
    """The tensor key of `module`'s weight (with or without the first name component)."""
    for key in (f"{module}.weight", f"{module.partition('.')[2]}.weight"):
        if key in keys:
            return key
    return None


class SafetensorsFolder:
    """A Hugging Face model folder: index (or single file) read from headers only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.index = safetensors_index(path)
        self._files: dict[Path, TensorFile] = {f: open_safetensors(f)
                                               for f in sorted(set(self.index.values()))}

    def read(self, module: str) -> SavedWeight | None:
        key = weight_key(module, self.index)
        if key is None:
            return None
        tf = self._files[self.index[key]]
        if key not in tf.tensors:
            raise FtdiagError(f"{tf.path} lacks {key} listed in its index (incomplete export?)")
        info = tf.tensors[key]
        if info.dtype not in ("F32", "F16", "BF16"):
            return SavedWeight(next(tf.read([key]))[1], info.dtype)
        mm = np.memmap(tf.path, dtype=np.uint8, mode="r")
        raw = mm[tf.data_offset + info.start:tf.data_offset + info.end]
        return SavedWeight(raw.view(NP_DTYPES[info.dtype]).reshape(info.shape), info.dtype)


def safetensors_index(path: Path) -> dict[str, Path]:
    """Tensor key -> file, from model.safetensors.index.json or the single model.safetensors."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json_object(index).get("weight_map")
        if not isinstance(weight_map, dict) or not all(
                isinstance(v, str) for v in weight_map.values()):
            raise FtdiagError(f"cannot read {index}: no weight_map of tensor name: file name")
        out = {k: path / v for k, v in weight_map.items()}
        missing = sorted({p.name for p in out.values() if not p.is_file()})
        if missing:
            raise FtdiagError(f"{path} lacks shards listed in its index: {', '.join(missing)}",
                              hint="the export was not copied or saved completely")
        return out
    single = path / "model.safetensors"
    if not single.is_file():
        raise FtdiagError(f"{path} holds no safetensors weights",
                          hint="save with save_pretrained(dir, safe_serialization=True)")
    return dict.fromkeys(open_safetensors(single).tensors, single)


class GgufModel:
    """A merged model in one GGUF file; tensors dequantized one at a time."""

    def __init__(self, path: Path, reader: Any) -> None:
        import gguf

        self.path = path
        self.reader = reader
        self.fields = gguf_fields(reader)
        self.arch_name = str(self.fields.get("general.architecture", ""))
        arch = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}.get(self.arch_name)
        if arch is None:
            raise FtdiagError(f"{path}: unknown GGUF architecture {self.arch_name!r}")
        prefix = self.arch_name
        self.n_head = int(self.fields.get(f"{prefix}.attention.head_count", 0) or 0)
        self.n_head_kv = int(self.fields.get(f"{prefix}.attention.head_count_kv", 0)
                             or self.n_head)
        blocks = int(self.fields.get(f"{prefix}.block_count", 0) or 0)
        if not 0 <= blocks <= MAX_BLOCKS:
            raise FtdiagError(f"{path}: {prefix}.block_count is {blocks}, more layers than "
                              f"ftdiag maps (up to {MAX_BLOCKS})")
        self.names = gguf.TensorNameMap(arch, blocks)
        self.tensors = {t.name: t for t in reader.tensors}

    def gguf_name(self, module: str) -> str | None:
        """llama.cpp's name for a Hugging Face module (blk.N.attn_q.weight)."""
        name = self.names.get_name(module)
        return f"{name}.weight" if name is not None else None

    def read(self, module: str) -> SavedWeight | None:
        import gguf

        name = self.gguf_name(module)
        t = self.tensors.get(name) if name else None
        if t is None:
            return None
        qtype = gguf.GGMLQuantizationType(t.tensor_type)
        try:
            values = np.asarray(gguf.quants.dequantize(t.data, qtype), dtype=np.float32)
        except (NotImplementedError, ValueError) as exc:
            raise FtdiagError(f"cannot dequantize {name} ({qtype.name}) in {self.path}: {exc}",
                              hint="gguf-py has no dequantizer for it") from exc
        values = values.reshape(tuple(int(n) for n in reversed(t.shape)))
        half = quant_half_step(values, qtype.name)
        if self._permuted(module):
            heads = self.n_head if module.endswith("q_proj") else self.n_head_kv
            if heads <= 0 or values.ndim < 2 or values.shape[0] % (2 * heads):
                raise FtdiagError(f"{self.path}: {name} has {values.shape[0]} rows, not pairs "
                                  f"for each of its {heads} attention heads (corrupt metadata?)")
            values = unpermute(values, heads)
            half = unpermute(half, heads) if half is not None else None
        return SavedWeight(values, qtype.name, half)

    def _permuted(self, module: str) -> bool:
        """llama.cpp permutes q/k rows of Llama-family models for its RoPE layout."""
        return self.arch_name in ("llama", "mistral", "granite") and \
            module.endswith(("q_proj", "k_proj")) and self.n_head > 0


def gguf_fields(reader: Any) -> dict[str, Any]:
    """Scalar and string metadata of a GGUF file (arrays such as the vocabulary are skipped);
    the counts and alpha ftdiag computes with must be single finite numbers."""
    out: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer.ggml.") and key.endswith(("tokens", "merges", "scores",
                                                                "token_type")):
            continue
        try:
            out[key] = field.contents()
        except (ValueError, IndexError, TypeError):
            continue
        if key.endswith(NUMERIC_FIELDS) and not _finite_number(out[key]):
            raise FtdiagError(f"GGUF field {key} is {str(out[key])[:60]!r}, not a number",
                              hint="llama.cpp refuses such a file too; convert it again")
    return out


def _finite_number(x: Any) -> bool:
    try:
        return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
    except OverflowError:
        return False


def open_gguf(path: Path) -> Any:
    """A GGUFReader on `path`; a corrupt, truncated or lying file is one user error.

    The layout is walked first with every count and length checked against the file: gguf-py
    trusts them (an array claiming 2^40 items past the end of the file loops for hours).
    """
    import gguf

    try:
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            _GgufLayout(buf).check()
        return gguf.GGUFReader(path)
    except FtdiagError as exc:
        raise FtdiagError(f"cannot read GGUF file {path}: {exc.message}", exc.hint) from None
    except Exception as exc:  # the reader raises ValueError, struct and numpy errors
        raise FtdiagError(f"cannot read GGUF file {path} (corrupt or truncated?): {exc}") from exc


class _GgufLayout:
    """Walks a GGUF header (metadata, tensor infos) with bounds checks; raises FtdiagError."""

    STRING, ARRAY = 8, 9

    def __init__(self, buf: Any) -> None:
        self.buf, self.size, self.items = buf, len(buf), 0
        self.order = ">" if self.size >= 8 and buf[4:6] == b"\0\0" else "<"  # as gguf-py

    def unpack(self, fmt: str, off: int) -> tuple[int, ...]:
        if off + struct.calcsize(self.order + fmt) > self.size:
            raise FtdiagError(f"it ends inside its header (byte {off}; truncated?)")
        return struct.unpack_from(self.order + fmt, self.buf, off)

    def skip(self, off: int, vtype: int, depth: int = 0) -> int:
        """The offset after one value of type `vtype` at `off`."""
        self.items += 1
        if self.items > MAX_GGUF_ITEMS:
            raise FtdiagError(f"more than {MAX_GGUF_ITEMS:,} metadata values")
        if vtype in GGUF_SCALARS:
            end = off + GGUF_SCALARS[vtype]
        elif vtype == self.STRING:
            end = off + 8 + self.unpack("Q", off)[0]
        elif vtype == self.ARRAY and depth < 2:
            itype, n = self.unpack("IQ", off)
            off += 12
            if itype in GGUF_SCALARS:
                end = off + n * GGUF_SCALARS[itype]
            elif n > (self.size - off) // 8:
                raise FtdiagError(f"an array claims {n:,} items, more than the file holds")
            else:
                for _ in range(n):
                    off = self.skip(off, itype, depth + 1)
                end = off
        else:
            raise FtdiagError(f"unknown metadata value type {vtype} at byte {off}")
        if end > self.size:
            raise FtdiagError(f"a value at byte {off} runs past the end of the file (truncated?)")
        return end

    def check(self) -> None:
        """Magic, counts, metadata, tensor infos, and each tensor's data inside the file."""
        import gguf

        if self.buf[:4] != b"GGUF":
            raise FtdiagError("no GGUF magic")
        n_tensors, n_kv = self.unpack("QQ", 8)
        if n_kv > self.size // 12 or n_tensors > self.size // 24:
            raise FtdiagError(f"it claims {n_kv:,} metadata keys and {n_tensors:,} tensors, "
                              "more than the file holds")
        off, align = 24, 32
        for _ in range(n_kv):
            key_end = self.skip(off, self.STRING)
            (vtype,) = self.unpack("I", key_end)
            if self.buf[off + 8:key_end] == b"general.alignment" and vtype == 4:
                align = self.unpack("I", key_end + 4)[0] or 32
            off = self.skip(key_end + 4, vtype)
        infos = []
        for _ in range(n_tensors):
            name_end = self.skip(off, self.STRING)
            (n_dims,) = self.unpack("I", name_end)
            if n_dims > 4:
                raise FtdiagError(f"a tensor at byte {off} claims {n_dims} dimensions (max 4)")
            *dims, qtype, start = self.unpack("Q" * n_dims + "IQ", name_end + 4)
            infos.append((bytes(self.buf[off + 8:name_end]), dims, qtype, start))
            off = name_end + 4 + 4 * 3 + 8 * n_dims
        data = -(-off // align) * align
        for name, dims, qtype, start in infos:
            try:
                kind = gguf.GGMLQuantizationType(qtype)
                block, type_size = gguf.GGML_QUANT_SIZES[kind]
            except (ValueError, KeyError):
                raise FtdiagError(f"tensor {name[:100]!r} has unknown type {qtype}") from None
            n = math.prod(dims)
            if (dims and dims[0] % block) or data + start + n * type_size // block > self.size:
                raise FtdiagError(f"tensor {name[:100]!r} ({kind.name} {dims}) runs past the end "
                                  "of the file or splits a block (truncated?)")
            if name.endswith((b".lora_a", b".lora_b")) and not _dequantizable(kind):
                raise FtdiagError(f"LoRA tensor {name[:100]!r} is {kind.name}, which gguf-py "
                                  "cannot dequantize")


@functools.cache
def _dequantizable(kind: Any) -> bool:
    import gguf

    try:
        gguf.quants.dequantize(np.zeros((1, gguf.GGML_QUANT_SIZES[kind][1]), np.uint8), kind)
    except NotImplementedError:
        return False
    return True


def quant_half_step(values: np.ndarray, qtype: str) -> np.ndarray | None:
    """Half the quantization step of each element's block; None for float types."""
    if qtype in MANTISSA_BITS:
        return None
    bits, block = QUANT_BITS.get(qtype, (4, 32))
    flat = values.reshape(-1, block) if values.size % block == 0 else values.reshape(1, -1)
    step = (flat.max(axis=1) - flat.min(axis=1)) / np.float32(2**bits - 1)
    half = np.repeat(step / 2, flat.shape[1]).astype(np.float32)
    return half.reshape(values.shape)


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's convert_hf_to_gguf `permute(w, n_head, n_head_kv)` on the rows."""
    rows = w.shape[0]
    return np.ascontiguousarray(
        w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row permutation (HF rotary halves -> interleaved pairs)."""
    rows = w.shape[0]
    return np.ascontiguousarray(
        w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))
