"""Reading exported weights: safetensors indexes, GGUF headers written byte by byte, q/k rows.

The GGUF files here are packed with struct from the format's layout (magic, version, counts,
key/type/value, tensor infos, aligned data), not written by ftdiag or gguf-py, so each damaged
header is damaged on purpose and the error it must give is known.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from safetensors.numpy import save_file

from ftdiag.errors import FtdiagError
from ftdiag.export import weights
from ftdiag.export.weights import (
    GgufModel,
    SafetensorsFolder,
    SavedWeight,
    _finite_number,
    gguf_fields,
    open_gguf,
    permute,
    quant_half_step,
    safetensors_index,
    unpermute,
    weight_key,
)

U32, U64, STRING, ARRAY = 4, 10, 8, 9
F32, Q8_0, I8 = 0, 8, 24


def s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str, vtype: int, payload: bytes) -> bytes:
    return s(key) + struct.pack("<I", vtype) + payload


def tensor(name: str, dims: list[int], qtype: int = F32, offset: int = 0) -> bytes:
    return (s(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
            + struct.pack("<IQ", qtype, offset))


def gguf(kvs: list[bytes], tensors: list[bytes], data: bytes = b"", align: int = 32,
         n_kv: int | None = None, n_tensors: int | None = None) -> bytes:
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors) if n_tensors is None else n_tensors,
                                 len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(tensors)
    return body + b"\0" * (-len(body) % align) + data


def damaged(tmp_path: Path, raw: bytes) -> str:
    path = tmp_path / "m.gguf"
    path.write_bytes(raw)
    with pytest.raises(FtdiagError) as err:
        open_gguf(path)
    prefix = f"cannot read GGUF file {path}: "
    assert err.value.message.startswith(prefix)
    return err.value.message.removeprefix(prefix)


ONE = [tensor("w", [4])]  # four F32 values: 16 bytes of data at offset 0


def test_a_well_formed_file_opens(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf([kv("general.architecture", STRING, s("llama"))], ONE,
                          np.arange(4, dtype=np.float32).tobytes()))
    reader = open_gguf(path)
    assert [t.name for t in reader.tensors] == ["w"]
    assert gguf_fields(reader)["general.architecture"] == "llama"


def test_no_magic(tmp_path: Path) -> None:
    assert damaged(tmp_path, b"GGML" + b"\0" * 40) == "no GGUF magic"


def test_a_header_cut_short(tmp_path: Path) -> None:
    assert damaged(tmp_path, b"GGUF\3\0\0\0\0\0") == \
        "it ends inside its header (byte 8; truncated?)"


def test_counts_larger_than_the_file(tmp_path: Path) -> None:
    raw = gguf([], [], n_kv=10**6)
    assert damaged(tmp_path, raw) == ("it claims 1,000,000 metadata keys and 0 tensors, more than "
                                      "the file holds")
    assert "and 5,000 tensors" in damaged(tmp_path, gguf([], [], n_tensors=5000))


def test_an_unknown_value_type(tmp_path: Path) -> None:
    raw = gguf([kv("k", 13, b"\0" * 8)], [])
    assert damaged(tmp_path, raw) == "unknown metadata value type 13 at byte 37"


def test_a_string_past_the_end(tmp_path: Path) -> None:
    raw = gguf([kv("k", STRING, struct.pack("<Q", 1000) + b"abc")], [])
    assert damaged(tmp_path, raw) == ("a value at byte 37 runs past the end of the file "
                                      "(truncated?)")


def test_an_array_of_strings_longer_than_the_file(tmp_path: Path) -> None:
    raw = gguf([kv("k", ARRAY, struct.pack("<IQ", STRING, 10**9))], [])
    assert damaged(tmp_path, raw) == "an array claims 1,000,000,000 items, more than the file holds"


def test_arrays_nest_at_most_two_deep(tmp_path: Path) -> None:
    inner = struct.pack("<IQ", U32, 1) + struct.pack("<I", 7)
    two = kv("k", ARRAY, struct.pack("<IQ", ARRAY, 1) + inner)
    path = tmp_path / "ok.gguf"
    path.write_bytes(gguf([two], []))
    open_gguf(path)
    three = kv("k", ARRAY, struct.pack("<IQ", ARRAY, 1) + struct.pack("<IQ", ARRAY, 1) + inner)
    assert damaged(tmp_path, gguf([three], [])).startswith("unknown metadata value type 9 at")


def test_metadata_values_are_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights, "MAX_GGUF_ITEMS", 3)
    strings = kv("k", ARRAY, struct.pack("<IQ", STRING, 3) + s("a") + s("b") + s("c"))
    assert damaged(tmp_path, gguf([strings], [])) == "more than 3 metadata values"


def test_a_tensor_with_five_dimensions(tmp_path: Path) -> None:
    raw = gguf([], [tensor("w", [1, 1, 1, 1, 1])])
    assert damaged(tmp_path, raw) == "a tensor at byte 24 claims 5 dimensions (max 4)"


def test_a_tensor_of_unknown_type(tmp_path: Path) -> None:
    assert damaged(tmp_path, gguf([], [tensor("w", [4], qtype=99)])) == \
        "tensor b'w' has unknown type 99"


def test_tensor_data_past_the_end_or_splitting_a_block(tmp_path: Path) -> None:
    short = gguf([], ONE, b"\0" * 15)
    assert damaged(tmp_path, short) == ("tensor b'w' (F32 [4]) runs past the end of the file or "
                                        "splits a block (truncated?)")
    split = gguf([], [tensor("q", [16], qtype=Q8_0)], b"\0" * 34)
    assert "tensor b'q' (Q8_0 [16]) runs past the end" in damaged(tmp_path, split)
    at_end = tmp_path / "end.gguf"
    at_end.write_bytes(gguf([], ONE, b"\0" * 16))
    open_gguf(at_end)


def test_the_alignment_key_moves_the_data(tmp_path: Path) -> None:
    align = kv("general.alignment", U32, struct.pack("<I", 64))
    ok = tmp_path / "ok.gguf"
    ok.write_bytes(gguf([align], ONE, b"\0" * 16, align=64))
    open_gguf(ok)
    # the same file padded to 32 only: the header ends at byte 90, so its data starts at 96,
    # not at 128 where alignment 64 puts it (and 128 + 16 bytes is past its 112 bytes)
    raw = gguf([align], ONE, b"\0" * 16, align=32)
    assert len(raw) == 112 and "runs past the end" in damaged(tmp_path, raw)


def test_alignment_zero_is_walked_as_32_and_left_to_the_reader(tmp_path: Path) -> None:
    zero = kv("general.alignment", U32, struct.pack("<I", 0))
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf([zero], ONE, b"\0" * 16))
    with pytest.raises(FtdiagError) as err:  # the walk passes; gguf-py refuses alignment 0
        open_gguf(path)
    assert err.value.message.endswith("(corrupt or truncated?): Invalid alignment: must be a "
                                      "non-zero power of two")


def test_a_lora_tensor_gguf_py_cannot_dequantize(tmp_path: Path) -> None:
    raw = gguf([], [tensor("blk.0.attn_q.weight.lora_a", [4], qtype=I8)], b"\0" * 4)
    assert damaged(tmp_path, raw) == ("LoRA tensor b'blk.0.attn_q.weight.lora_a' is I8, which "
                                      "gguf-py cannot dequantize")


def test_a_big_endian_header_is_walked_big_endian(tmp_path: Path) -> None:
    raw = b"GGUF" + struct.pack(">IQQ", 3, 0, 1) + struct.pack(">Q", 1) + b"k" \
        + struct.pack(">II", U32, 5)
    path = tmp_path / "be.gguf"
    path.write_bytes(raw)
    assert gguf_fields(open_gguf(path))["k"] == 5


def test_a_reader_failure_is_one_user_error(tmp_path: Path) -> None:
    path = tmp_path / "v9.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 99, 0, 0))  # a version gguf-py refuses
    with pytest.raises(FtdiagError) as err:
        open_gguf(path)
    assert err.value.message.startswith(f"cannot read GGUF file {path} (corrupt or truncated?): ")


def test_numeric_fields_must_be_finite_numbers(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf([kv("adapter.lora.alpha", STRING, s("sixteen"))], []))
    with pytest.raises(FtdiagError) as err:
        gguf_fields(open_gguf(path))
    assert (err.value.message, err.value.hint) == (
        "GGUF field adapter.lora.alpha is 'sixteen', not a number",
        "llama.cpp refuses such a file too; convert it again")


def test_tokenizer_arrays_are_skipped() -> None:
    class Field:
        def __init__(self, value: object) -> None:
            self.value = value

        def contents(self) -> object:
            if isinstance(self.value, Exception):
                raise self.value
            return self.value

    class Reader:
        fields: ClassVar[dict[str, Field]] = {
            "tokenizer.ggml.tokens": Field(["a"]), "tokenizer.ggml.merges": Field(["a b"]),
            "tokenizer.ggml.scores": Field([0.0]), "tokenizer.ggml.token_type": Field([1]),
            "tokenizer.ggml.model": Field("gpt2"), "broken": Field(ValueError("x")),
            "llama.block_count": Field(2)}

    assert gguf_fields(Reader()) == {"tokenizer.ggml.model": "gpt2", "llama.block_count": 2}


@pytest.mark.parametrize(("x", "ok"), [(2, True), (2.5, True), (True, False), (float("nan"), False),
                                       (float("inf"), False), ("2", False), (10**400, False)])
def test_finite_number(x: object, ok: bool) -> None:
    assert _finite_number(x) is ok


# --- q/k rows, quantization steps ---

def test_permute_and_unpermute_follow_llama_cpp_for_two_heads() -> None:
    rows = np.arange(8)
    assert permute(rows, 2).tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    assert permute(rows, 1).tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    assert unpermute(np.array([0, 4, 1, 5, 2, 6, 3, 7]), 1).tolist() == list(range(8))
    w = np.arange(24).reshape(8, 3)
    assert unpermute(permute(w, 2), 2).tolist() == w.tolist()


def test_quant_half_step_is_half_the_block_range_over_its_levels() -> None:
    values = np.concatenate([np.linspace(0, 255, 32), np.zeros(32)]).astype(np.float32)
    half = quant_half_step(values.reshape(2, 32), "Q8_0")
    assert half is not None and half.shape == (2, 32)
    assert half[0].tolist() == [0.5] * 32 and half[1].tolist() == [0.0] * 32
    assert quant_half_step(values, "F16") is None and quant_half_step(values, "BF16") is None


def test_quant_half_step_of_an_odd_size_or_unknown_type() -> None:
    odd = np.array([0.0, 15.0, 3.0], np.float32)
    assert quant_half_step(odd, "Q4_0").tolist() == [0.5, 0.5, 0.5]  # one block, 4 bits
    assert quant_half_step(odd, "NEW_Q").tolist() == [0.5, 0.5, 0.5]  # taken as 4-bit
    q2 = np.linspace(0, 3, 16, dtype=np.float32)
    assert quant_half_step(q2, "Q2_K").tolist() == [0.5] * 16  # 2 bits, blocks of 16


def test_lost_and_noise_with_given_half_steps() -> None:
    w = SavedWeight(np.zeros((1, 4), np.float32), "Q8_0", np.full((1, 4), 0.5, np.float32))
    lost, noise = w.lost_and_noise(np.array([[0.1, -0.6, 0.49, -0.2]], np.float32))
    assert (lost, noise) == (3, pytest.approx(4 * 0.25 / 3))


def test_lost_and_noise_from_the_float_exponent() -> None:
    w = SavedWeight(np.array([[1.0, 1.0]], np.float32), "F16")  # half ULP of 1.0 in F16: 2^-11
    lost, noise = w.lost_and_noise(np.array([[2.0**-12, 2.0**-10]], np.float32))
    assert lost == 1 and noise == pytest.approx(2 * 2.0**-22 / 3)


def test_saved_weight_rows_widen_bf16_bits() -> None:
    bits = np.array([[0x3F80, 0x4000]], np.uint16)  # bf16 1.0, 2.0
    w = SavedWeight(bits, "BF16")
    assert w.rows().tolist() == [[1.0, 2.0]] and w.shape == (1, 2)
    assert w.sample(np.array([0])).values.tolist() == [[1.0, 2.0]]


# --- safetensors folders ---

def test_weight_key_with_or_without_the_first_component() -> None:
    assert weight_key("model.a", {"model.a.weight": 1}) == "model.a.weight"
    assert weight_key("model.a", {"a.weight": 1}) == "a.weight"
    assert weight_key("model.a", {"b.weight": 1}) is None


def test_a_folder_without_safetensors(tmp_path: Path) -> None:
    with pytest.raises(FtdiagError) as err:
        safetensors_index(tmp_path)
    assert (err.value.message, err.value.hint) == (
        f"{tmp_path} holds no safetensors weights",
        "save with save_pretrained(dir, safe_serialization=True)")


def test_an_index_naming_missing_shards(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a.weight": "s2.safetensors", "b.weight": "s1.safetensors",
                        "c.weight": "s2.safetensors"}}))
    with pytest.raises(FtdiagError) as err:
        safetensors_index(tmp_path)
    assert (err.value.message, err.value.hint) == (
        f"{tmp_path} lacks shards listed in its index: s1.safetensors, s2.safetensors",
        "the export was not copied or saved completely")


@pytest.mark.parametrize("weight_map", [None, ["a"], {"a.weight": 3}])
def test_an_index_without_a_weight_map(tmp_path: Path, weight_map: object) -> None:
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(FtdiagError) as err:
        safetensors_index(tmp_path)
    assert err.value.message == (f"cannot read {tmp_path / 'model.safetensors.index.json'}: no "
                                 "weight_map of tensor name: file name")


def test_a_sharded_folder_reads_each_module_from_its_shard(tmp_path: Path) -> None:
    save_file({"model.a.weight": np.ones((2, 2), np.float32)}, str(tmp_path / "s1.safetensors"))
    save_file({"b.weight": np.full((1, 3), 2.0, np.float16),
               "q.weight": np.array([[1, -1]], np.int8)}, str(tmp_path / "s2.safetensors"))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "model.a.weight": "s1.safetensors", "b.weight": "s2.safetensors",
        "q.weight": "s2.safetensors", "gone.weight": "s1.safetensors"}}))
    folder = SafetensorsFolder(tmp_path)
    a = folder.read("model.a")
    b = folder.read("model.b")
    q = folder.read("model.q")
    assert a is not None and (a.dtype, a.values.tolist()) == ("F32", [[1.0, 1.0], [1.0, 1.0]])
    assert b is not None and (b.dtype, b.values.tolist()) == ("F16", [[2.0, 2.0, 2.0]])
    assert q is not None and (q.dtype, q.values.tolist()) == ("I8", [[1.0, -1.0]])
    assert folder.read("model.none") is None
    with pytest.raises(FtdiagError) as err:
        folder.read("gone")
    assert err.value.message == (f"{tmp_path / 's1.safetensors'} lacks gone.weight listed in its "
                                 "index (incomplete export?)")


# --- a merged GGUF model, packed here ---

def model_gguf(tmp_path: Path, arch: str = "llama", blocks: int = 1, rows: int = 8) -> Path:
    """One q_proj weight of `rows` × 3 F32 values (0, 1, 2, ...) and 2 attention heads."""
    kvs = [kv("general.architecture", STRING, s(arch)),
           kv(f"{arch}.attention.head_count", U32, struct.pack("<I", 2)),
           kv(f"{arch}.block_count", U32, struct.pack("<I", blocks))]
    data = np.arange(rows * 3, dtype=np.float32).tobytes()
    path = tmp_path / "model.gguf"
    path.write_bytes(gguf(kvs, [tensor("blk.0.attn_q.weight", [3, rows])], data))
    return path


def test_a_gguf_model_gives_q_rows_back_in_hugging_face_order(tmp_path: Path) -> None:
    path = model_gguf(tmp_path)
    model = GgufModel(path, open_gguf(path))
    w = model.read("model.layers.0.self_attn.q_proj")
    assert w is not None and w.dtype == "F32" and w.half_step is None
    rows = np.arange(24, dtype=np.float32).reshape(8, 3)
    assert w.values.tolist() == rows[[0, 2, 1, 3, 4, 6, 5, 7]].tolist()  # un-permuted, 2 heads
    assert model.read("model.layers.0.self_attn.v_proj") is None
    assert model.gguf_name("model.layers.0.mlp.up_proj") == "blk.0.ffn_up.weight"


def test_a_gguf_q_weight_that_does_not_split_into_head_pairs(tmp_path: Path) -> None:
    path = model_gguf(tmp_path, rows=6)
    with pytest.raises(FtdiagError) as err:
        GgufModel(path, open_gguf(path)).read("model.layers.0.self_attn.q_proj")
    assert err.value.message == (f"{path}: blk.0.attn_q.weight has 6 rows, not pairs for each of "
                                 "its 2 attention heads (corrupt metadata?)")


def test_a_gguf_model_of_an_unknown_architecture_or_too_many_layers(tmp_path: Path) -> None:
    path = model_gguf(tmp_path, arch="nosuch")
    with pytest.raises(FtdiagError) as err:
        GgufModel(path, open_gguf(path))
    assert err.value.message == f"{path}: unknown GGUF architecture 'nosuch'"
    path = model_gguf(tmp_path, blocks=1025)
    with pytest.raises(FtdiagError) as err:
        GgufModel(path, open_gguf(path))
    assert err.value.message == (f"{path}: llama.block_count is 1025, more layers than ftdiag "
                                 "maps (up to 1024)")


def test_the_item_count_includes_keys_and_every_array_element(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One key (1) holding an array (1) of three strings (3): exactly 5 metadata values."""
    monkeypatch.setattr(weights, "MAX_GGUF_ITEMS", 5)
    strings = kv("k", ARRAY, struct.pack("<IQ", STRING, 3) + s("a") + s("b") + s("c"))
    path = tmp_path / "ok.gguf"
    path.write_bytes(gguf([strings], []))
    open_gguf(path)


def test_long_names_and_values_are_cut_in_messages(tmp_path: Path) -> None:
    name = "t" * 120
    assert damaged(tmp_path, gguf([], [tensor(name, [4], qtype=99)])) == \
        f"tensor {name[:100].encode()!r} has unknown type 99"
    assert damaged(tmp_path, gguf([], [tensor(name, [4])], b"")).startswith(
        f"tensor {name[:100].encode()!r} (F32 [4]) runs past")
    lora = "l" * 110 + ".lora_b"
    assert damaged(tmp_path, gguf([], [tensor(lora, [4], qtype=I8)], b"\0" * 4)).startswith(
        f"LoRA tensor {lora[:100].encode()!r} is I8")
    path = tmp_path / "v.gguf"
    path.write_bytes(gguf([kv("adapter.lora.alpha", STRING, s("x" * 80))], []))
    with pytest.raises(FtdiagError) as err:
        gguf_fields(open_gguf(path))
    assert err.value.message == f"GGUF field adapter.lora.alpha is {'x' * 60!r}, not a number"


def test_a_walker_error_has_no_hint(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGML" + b"\0" * 40)
    with pytest.raises(FtdiagError) as err:
        open_gguf(tmp_path / "m.gguf")
    assert err.value.hint == ""


def test_granite_q_rows_are_unpermuted_too(tmp_path: Path) -> None:
    path = model_gguf(tmp_path, arch="granite")
    w = GgufModel(path, open_gguf(path)).read("model.layers.0.self_attn.q_proj")
    assert w is not None and w.values[:, 0].tolist() == [0, 6, 3, 9, 12, 18, 15, 21]


def test_one_head_is_unpermuted_as_one_head(tmp_path: Path) -> None:
    kvs = [kv("general.architecture", STRING, s("llama")),
           kv("llama.attention.head_count", U32, struct.pack("<I", 1)),
           kv("llama.block_count", U32, struct.pack("<I", 1))]
    path = tmp_path / "one.gguf"
    path.write_bytes(gguf(kvs, [tensor("blk.0.attn_q.weight", [1, 4])],
                          np.arange(4, dtype=np.float32).tobytes()))
    w = GgufModel(path, open_gguf(path)).read("model.layers.0.self_attn.q_proj")
    assert w is not None and w.values[:, 0].tolist() == [0, 2, 1, 3]  # rows 0 1 | 2 3 interleaved


def test_quant_half_step_is_per_block() -> None:
    values = np.concatenate([np.linspace(0, 255, 32), np.full(32, 100.0)]).astype(np.float32)
    half = quant_half_step(values, "Q8_0")
    assert half is not None and half[32:].tolist() == [0.0] * 32
    unknown = quant_half_step(values, "NEW_Q")  # taken as 4 bits in blocks of 32
    assert unknown is not None and unknown[32:].tolist() == [0.0] * 32


def bare_model(tmp_path: Path, keys: dict[str, int], weight: str = "blk.0.attn_q.weight",
               arch: str | None = "llama") -> Path:
    """A q (or k) weight of 8 × 1 values 0..7 with only the metadata keys given."""
    kvs = [kv("general.architecture", STRING, s(arch))] if arch else []
    kvs += [kv(f"llama.{k}", U32, struct.pack("<I", v)) for k, v in keys.items()]
    path = tmp_path / "bare.gguf"
    path.write_bytes(gguf(kvs, [tensor(weight, [1, 8])], np.arange(8, dtype=np.float32).tobytes()))
    return path


def read_rows(path: Path, module: str) -> list[float] | None:
    w = GgufModel(path, open_gguf(path)).read(module)
    return None if w is None else w.values[:, 0].tolist()


Q_PROJ, K_PROJ = "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj"


def test_without_head_count_q_rows_are_read_as_stored(tmp_path: Path) -> None:
    assert read_rows(bare_model(tmp_path, {"block_count": 1}), Q_PROJ) == list(range(8))


def test_without_head_count_kv_k_rows_use_the_head_count(tmp_path: Path) -> None:
    path = bare_model(tmp_path, {"block_count": 1, "attention.head_count": 2},
                      weight="blk.0.attn_k.weight")
    assert read_rows(path, K_PROJ) == [0, 2, 1, 3, 4, 6, 5, 7]


def test_without_block_count_no_layer_is_mapped(tmp_path: Path) -> None:
    assert read_rows(bare_model(tmp_path, {"attention.head_count": 2}), Q_PROJ) is None


def test_1024_blocks_are_mapped(tmp_path: Path) -> None:
    path = bare_model(tmp_path, {"block_count": 1024, "attention.head_count": 2})
    assert read_rows(path, Q_PROJ) == [0, 2, 1, 3, 4, 6, 5, 7]


def test_a_gguf_model_without_architecture(tmp_path: Path) -> None:
    path = bare_model(tmp_path, {}, arch=None)
    with pytest.raises(FtdiagError) as err:
        GgufModel(path, open_gguf(path))
    assert err.value.message == f"{path}: unknown GGUF architecture ''"


# --- what the mutation run left: exact bounds, signed fields, stored dtypes ---

def test_an_update_of_exactly_half_a_step_survives_the_rounding() -> None:
    """Lost means strictly below h: an update of h itself (or of h's exponent) is kept."""
    given = SavedWeight(np.zeros((1, 2), np.float32), "Q8_0", np.full((1, 2), 0.5, np.float32))
    assert given.lost_and_noise(np.array([[0.5, -0.5]], np.float32))[0] == 0
    f16 = SavedWeight(np.ones((1, 3), np.float32), "F16")  # h = 2^-11
    assert f16.lost_and_noise(np.array([[2.0**-11, 1.5 * 2.0**-11, 2.0**-12]], np.float32))[0] == 1


def test_on_zero_weights_f16_loses_what_is_below_half_its_subnormal_spacing() -> None:
    """F16's smallest subnormal is 2^-24: an update below 2^-25 added to 0 rounds back to 0."""
    w = SavedWeight(np.zeros((1, 2), np.float32), "F16")
    lost, noise = w.lost_and_noise(np.array([[2.0**-26, 2.0**-25]], np.float32))
    assert (lost, noise) == (1, 2 * 2.0**-50 / 3)


def test_on_zero_weights_f32_loses_only_subnormal_updates() -> None:
    """F32 and BF16 half-steps are floored at the smallest normal, 2^-126."""
    for dtype in ("F32", "BF16"):
        w = SavedWeight(np.zeros((1, 3), np.float32), dtype)
        update = np.array([[2.0**-127, 2.0**-126, 2.0**-26]], np.float32)
        assert w.lost_and_noise(update)[0] == 1, dtype


def test_a_dtype_without_mantissa_bits_is_taken_as_f32() -> None:
    """An integer export (I8, widened to float32 on read) gets F32's half ULP: 2^-24 at 1.0."""
    w = SavedWeight(np.ones((1, 3), np.float32), "I8")
    lost, noise = w.lost_and_noise(np.array([[2.0**-25, 2.0**-24, 1.0]], np.float32))
    assert (lost, noise) == (1, 3 * 2.0**-48 / 3)


def test_weight_key_drops_only_the_first_component() -> None:
    keys = {"layers.0.q.weight": 1, "q.weight": 2}
    assert weight_key("model.layers.0.q", keys) == "layers.0.q.weight"
    assert weight_key("model.layers.0.k", {"k.weight": 1}) is None


def safetensors_raw(name: str, dtype: str, shape: list[int], data: bytes) -> bytes:
    """A one-tensor safetensors file packed by hand (numpy has no bfloat16 to save)."""
    header = json.dumps({name: {"dtype": dtype, "shape": shape,
                                "data_offsets": [0, len(data)]}}).encode()
    return struct.pack("<Q", len(header)) + header + data


def test_float_tensors_are_kept_as_stored_and_mapped_read_only(tmp_path: Path) -> None:
    """F16 and BF16 stay half precision (rows are widened when asked for), and the export is
    opened read-only: never widened whole, never opened for writing."""
    (tmp_path / "model.safetensors").write_bytes(
        safetensors_raw("model.h.weight", "F16", [1, 2], np.ones(2, np.float16).tobytes()))
    folder = SafetensorsFolder(tmp_path)
    assert folder.path == tmp_path
    h = folder.read("model.h")
    assert h is not None and h.raw.dtype == np.float16 and not h.raw.flags.writeable
    assert h.values.dtype == np.float32 and h.values.tolist() == [[1.0, 1.0]]
    # F16 half ULP of 1.0 is 2^-11, from the exponent bits of the widened rows
    assert h.lost_and_noise(np.array([[2.0**-12, 2.0**-11]], np.float32))[0] == 1

    (tmp_path / "model.safetensors").write_bytes(
        safetensors_raw("b.weight", "BF16", [1, 2], np.array([0x3F80, 0x4000], "<u2").tobytes()))
    b = SafetensorsFolder(tmp_path).read("model.b")
    assert b is not None and b.raw.dtype == np.uint16 and not b.raw.flags.writeable
    assert (b.dtype, b.values.tolist()) == ("BF16", [[1.0, 2.0]])
    part = b.sample(np.array([0]))
    assert part.dtype == "BF16"  # BF16's half ULP: 2^-8 at 1.0, 2^-7 at 2.0 (F32's: 2^-24)
    assert part.lost_and_noise(np.array([[2.0**-9, 2.0**-7]], np.float32))[0] == 1

    save_file({"f.weight": np.ones((1, 2), np.float32)}, str(tmp_path / "model.safetensors"))
    f = SafetensorsFolder(tmp_path).read("model.f")
    assert f is not None and f.raw.dtype == np.float32 and not f.raw.flags.writeable


def test_gguf_name_of_a_module_llama_cpp_does_not_name(tmp_path: Path) -> None:
    path = model_gguf(tmp_path)
    assert GgufModel(path, open_gguf(path)).gguf_name("model.layers.0.no_such_proj") is None


def test_a_gguf_weight_gguf_py_cannot_dequantize(tmp_path: Path) -> None:
    kvs = [kv("general.architecture", STRING, s("llama")),
           kv("llama.block_count", U32, struct.pack("<I", 1))]
    path = tmp_path / "i8.gguf"
    path.write_bytes(gguf(kvs, [tensor("blk.0.attn_q.weight", [3, 8], qtype=I8)], b"\1" * 24))
    with pytest.raises(FtdiagError) as err:
        GgufModel(path, open_gguf(path)).read(Q_PROJ)
    assert (err.value.message, err.value.hint) == (
        f"cannot dequantize blk.0.attn_q.weight (I8) in {path}: Dequantization for I8 is not yet "
        "implemented", "gguf-py has no dequantizer for it")


I32, F32_VALUE = 5, 6  # GGUF value types INT32 and FLOAT32


@pytest.mark.parametrize(("vtype", "payload", "heads"), [
    (I32, struct.pack("<i", -2), -2),  # a signed count
    (F32_VALUE, struct.pack("<f", 0.4), 0),  # a fraction: int(0.4) heads
])
def test_k_rows_with_a_head_count_kv_below_one(tmp_path: Path, vtype: int, payload: bytes,
                                               heads: int) -> None:
    kvs = [kv("general.architecture", STRING, s("llama")),
           kv("llama.block_count", U32, struct.pack("<I", 1)),
           kv("llama.attention.head_count", U32, struct.pack("<I", 2)),
           kv("llama.attention.head_count_kv", vtype, payload)]
    path = tmp_path / "kv.gguf"
    path.write_bytes(gguf(kvs, [tensor("blk.0.attn_k.weight", [1, 8])],
                          np.arange(8, dtype=np.float32).tobytes()))
    with pytest.raises(FtdiagError) as err:
        GgufModel(path, open_gguf(path)).read(K_PROJ)
    assert err.value.message == (f"{path}: blk.0.attn_k.weight has 8 rows, not pairs for each of "
                                 f"its {heads} attention heads (corrupt metadata?)")


def test_quant_half_steps_are_float32_like_the_values() -> None:
    half = quant_half_step(np.linspace(0, 255, 32, dtype=np.float32), "Q8_0")
    assert half is not None and half.dtype == np.float32


# --- the walk: every count is unsigned, and each bound is the file's size ---

HEAD = b"GGUF" + struct.pack("<I", 3)


def test_a_string_length_of_2_to_the_64_minus_1_runs_past_the_end(tmp_path: Path) -> None:
    raw = HEAD + struct.pack("<QQ", 0, 1) + struct.pack("<Q", 2**64 - 1) + b"\0" * 8
    assert damaged(tmp_path, raw) == ("a value at byte 24 runs past the end of the file "
                                      "(truncated?)")


def test_an_array_of_2_to_the_63_bytes_runs_past_the_end(tmp_path: Path) -> None:
    raw = gguf([kv("k", ARRAY, struct.pack("<IQ", 0, 2**63))], [])  # U8 items
    assert damaged(tmp_path, raw) == ("a value at byte 49 runs past the end of the file "
                                      "(truncated?)")


def test_an_array_item_type_of_2_to_the_31(tmp_path: Path) -> None:
    raw = gguf([kv("k", ARRAY, struct.pack("<IQ", 2**31, 1))], [])
    assert damaged(tmp_path, raw) == "unknown metadata value type 2147483648 at byte 49"


def test_an_array_of_numbers_longer_than_the_file(tmp_path: Path) -> None:
    """100 U32 items need 400 bytes; the file holds 40 after the array's header."""
    raw = gguf([kv("k", ARRAY, struct.pack("<IQ", U32, 100) + b"\0" * 40)], [])
    assert damaged(tmp_path, raw) == ("a value at byte 49 runs past the end of the file "
                                      "(truncated?)")


def test_a_number_array_is_walked_to_its_end(tmp_path: Path) -> None:
    """Two U32 items, then a string key: the walk must land on the second key."""
    two = kv("a", ARRAY, struct.pack("<IQ", U32, 2) + struct.pack("<2I", 7, 8))
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf([two, kv("b", STRING, s("x"))], ONE, b"\0" * 16))
    fields = gguf_fields(open_gguf(path))
    assert (fields["a"], fields["b"]) == ([7, 8], "x")


def test_an_array_of_empty_strings_may_fill_the_file_to_its_last_byte(tmp_path: Path) -> None:
    """Each string takes at least its 8-byte length: 3 empty ones in the last 24 bytes fit, a
    fourth does not."""
    head = HEAD + struct.pack("<QQ", 0, 1)
    path = tmp_path / "full.gguf"
    path.write_bytes(head + kv("k", ARRAY, struct.pack("<IQ", STRING, 3) + s("") * 3))
    assert gguf_fields(open_gguf(path))["k"] == ["", "", ""]
    raw = head + kv("k", ARRAY, struct.pack("<IQ", STRING, 2) + s(""))
    assert damaged(tmp_path, raw) == "an array claims 2 items, more than the file holds"


def test_counts_of_2_to_the_63(tmp_path: Path) -> None:
    assert damaged(tmp_path, gguf([], [], n_kv=2**63)) == (
        "it claims 9,223,372,036,854,775,808 metadata keys and 0 tensors, more than the file holds")
    assert damaged(tmp_path, gguf([], [], n_tensors=2**63)) == (
        "it claims 0 metadata keys and 9,223,372,036,854,775,808 tensors, more than the file holds")


def test_counts_at_the_size_bound_are_walked(tmp_path: Path) -> None:
    """size // 12 keys and size // 24 tensors are not refused up front (a key takes at least
    13 bytes, a tensor info 24): the walk reads them and stops where the file ends."""
    keys = HEAD + struct.pack("<QQ", 0, 13) + b"\0" * (156 - 24)  # 156 // 12 = 13 keys
    assert damaged(tmp_path, keys) == "it ends inside its header (byte 154; truncated?)"
    infos = HEAD + struct.pack("<QQ", 25, 0) + b"\0" * (600 - 24)  # 600 // 24 = 25 tensors
    assert damaged(tmp_path, infos) == "it ends inside its header (byte 600; truncated?)"


def test_a_value_type_of_2_to_the_31(tmp_path: Path) -> None:
    assert damaged(tmp_path, gguf([kv("k", 2**31, b"\0" * 8)], [])) == \
        "unknown metadata value type 2147483648 at byte 37"


def test_an_alignment_of_2_to_the_31_puts_the_data_past_the_end(tmp_path: Path) -> None:
    align = kv("general.alignment", U32, struct.pack("<I", 2**31))
    assert damaged(tmp_path, gguf([align], ONE, b"\0" * 16)) == (
        "tensor b'w' (F32 [4]) runs past the end of the file or splits a block (truncated?)")


def test_a_tensor_with_2_to_the_31_dimensions(tmp_path: Path) -> None:
    raw = gguf([], [s("w") + struct.pack("<I", 2**31) + b"\0" * 12])
    assert damaged(tmp_path, raw) == "a tensor at byte 24 claims 2147483648 dimensions (max 4)"


def test_a_tensor_with_four_dimensions_opens(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf([], [tensor("w", [1, 1, 1, 4])], b"\0" * 16))
    assert [t.name for t in open_gguf(path).tensors] == ["w"]


def test_a_dimension_or_type_of_2_to_the_63_or_31(tmp_path: Path) -> None:
    assert damaged(tmp_path, gguf([], [tensor("w", [2**63])], b"\0" * 16)) == (
        "tensor b'w' (F32 [9223372036854775808]) runs past the end of the file or splits a "
        "block (truncated?)")
    assert damaged(tmp_path, gguf([], [tensor("w", [4], qtype=2**31)], b"\0" * 16)) == \
        "tensor b'w' has unknown type 2147483648"


def test_a_tensor_offset_counts_from_the_data_start(tmp_path: Path) -> None:
    """A tensor at offset 32 needs 32 + 16 bytes of data."""
    late = [tensor("w", [4], offset=32)]
    assert damaged(tmp_path, gguf([], late, b"\0" * 47)) == (
        "tensor b'w' (F32 [4]) runs past the end of the file or splits a block (truncated?)")
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf([], late, b"\0" * 32 + np.arange(4, dtype=np.float32).tobytes()))
    assert open_gguf(path).tensors[0].data.tolist() == [0.0, 1.0, 2.0, 3.0]
