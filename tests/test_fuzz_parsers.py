"""Every parser ftdiag owns, fed generated files: each input ends in a result or one
`FtdiagError` (the CLI's one line, exit 2), never another exception, within PER_INPUT_S.

`make test` runs the "suite" profile (fixed seed, small budget); `make fuzz` sets
FTDIAG_FUZZ=long for a randomised run with many more inputs (FTDIAG_FUZZ_EXAMPLES per parser).
Inputs are built the way the formats are (headers, keys, instructions) with lies mixed in:
lengths past the end, wrong types, deep nesting, regexes that backtrack, invalid UTF-8.
"""

from __future__ import annotations

import json
import os
import signal
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftdiag.errors import FtdiagError

LONG = os.environ.get("FTDIAG_FUZZ") == "long"
PER_INPUT_S = 10 if LONG else 6  # the regex budget is 2 s; the rest is headroom on slow CI
settings.register_profile("suite", derandomize=True, deadline=None, database=None,
                          print_blob=True, suppress_health_check=list(HealthCheck))
settings.register_profile("long", derandomize=False, deadline=None, database=None,
                          print_blob=True, suppress_health_check=list(HealthCheck))


def budget(examples: int) -> settings:
    """The suite's `examples` per parser, or FTDIAG_FUZZ_EXAMPLES (default 2000) in make fuzz."""
    if LONG:
        return settings(settings.get_profile("long"),
                        max_examples=int(os.environ.get("FTDIAG_FUZZ_EXAMPLES", "2000")))
    return settings(settings.get_profile("suite"), max_examples=examples)


@contextmanager
def time_bound() -> Iterator[None]:
    """Fail the input (Hypothesis shrinks it) when it runs past PER_INPUT_S: never a hang."""
    def hang(signum: int, frame: Any) -> None:
        raise TimeoutError(f"one input ran past {PER_INPUT_S} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.setitimer(signal.ITIMER_REAL, PER_INPUT_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def survives(parse: Callable[[], object]) -> None:
    """The property: a result or an FtdiagError with a message, nothing else, in bounded time."""
    with time_bound():
        try:
            parse()
        except FtdiagError as exc:
            assert exc.message


# --- shared strategies -----------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=16)


@st.composite
def nested(draw: st.DrawFn) -> str:
    """A value wrapped in a few or thousands of arrays/objects (decoders recurse on them)."""
    depth = draw(st.integers(0, 5) | st.integers(90, 110) | st.integers(1000, 20_000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    return opener * depth + json.dumps(draw(scalars)) + closer * depth


def json_text(doc: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """A document as JSON (NaN allowed), or it cut short, or nested deep, or raw bytes."""
    dumped = doc.map(lambda v: json.dumps(v).encode())
    return st.one_of(dumped, dumped.flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])),
                     nested().map(str.encode), st.binary(max_size=64))


regexes = st.text(alphabet="().*+?|[]{}^$\\abqkv_proj.0123456789", max_size=16)
module_names = st.sampled_from(["q_proj", "v_proj", "k_proj", "o_proj", "up_proj", "lm_head",
                                "model.layers.0.self_attn.q_proj", "embed_tokens"])


# --- bounded JSON (ftdiag.safeio) ------------------------------------------------------------

def nesting(value: Any) -> int:
    if isinstance(value, dict | list):
        items = value.values() if isinstance(value, dict) else value
        return 1 + max(map(nesting, items), default=0)
    return 0


tricky_text = st.text(alphabet='[]{}"\\a\né', max_size=6)
tricky_json = st.recursive(st.none() | st.floats() | tricky_text, lambda inner: st.lists(
    inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3), max_leaves=20)


@budget(300)
@given(doc=tricky_json, ascii_only=st.booleans())
def test_json_depth_read_from_brackets_is_the_real_depth(doc: Any, ascii_only: bool) -> None:
    """The shortcut for big files (brackets counted in C) agrees with the decoded value."""
    from ftdiag.safeio import json_text_depth

    depth = json_text_depth(json.dumps(doc, ensure_ascii=ascii_only).encode())
    assert depth is None or depth == nesting(doc)


# --- safetensors header ----------------------------------------------------------------------

@st.composite
def safetensors_files(draw: st.DrawFn) -> bytes:
    """8-byte length + JSON header + data, each part possibly lying."""
    dtypes = st.sampled_from(["F32", "F16", "BF16", "I8", "U8", "BOOL", "F64", "F8_E4M3"])
    dims = st.integers(0, 6) | st.sampled_from([-1, 2**31, 2**63, 2**64]) | st.floats(0, 3)
    entry = st.fixed_dictionaries({"dtype": dtypes | scalars,
                                   "shape": st.lists(dims, max_size=3) | scalars,
                                   "data_offsets": st.lists(st.integers(-1, 300), min_size=2,
                                                            max_size=2) | scalars})
    header_doc = st.dictionaries(st.text(max_size=6), entry, max_size=3) | json_values
    header = draw(st.one_of(header_doc.map(lambda h: json.dumps(h).encode()),
                            json_text(json_values)))
    data = draw(st.binary(max_size=300))
    claimed = draw(st.none() | st.integers(0, 2**64 - 1))
    raw = struct.pack("<Q", len(header) if claimed is None else claimed) + header + data
    return raw[:draw(st.integers(0, len(raw)))] if draw(st.booleans()) else raw


@budget(300)
@given(data=safetensors_files())
def test_safetensors_header_reader(data: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    from ftdiag.adapters.tensorfile import NP_DTYPES, open_safetensors

    path = tmp_path_factory.getbasetemp() / "fuzz.safetensors"
    path.write_bytes(data)

    def parse() -> None:
        tf = open_safetensors(path)
        names = [n for n, info in tf.tensors.items() if info.dtype in NP_DTYPES]
        for name in names:
            tf.finite(name)
        list(tf.read(names))

    survives(parse)


# --- adapter_config.json ---------------------------------------------------------------------

config_values = scalars | regexes | st.lists(module_names | scalars, max_size=3) | \
    st.dictionaries(regexes, st.integers(-2, 64) | scalars, max_size=2)
config_docs = st.fixed_dictionaries({}, optional={
    "peft_type": st.sampled_from(["LORA", "lora", "IA3"]) | scalars,
    "r": st.integers(-1, 64) | config_values, "lora_alpha": st.integers(0, 64) | config_values,
    "target_modules": regexes | st.lists(module_names, max_size=3) | config_values,
    "exclude_modules": regexes | config_values, "rank_pattern": config_values,
    "alpha_pattern": config_values, "layers_to_transform": config_values,
    "modules_to_save": config_values, "use_dora": config_values, "use_rslora": config_values,
    "fan_in_fan_out": config_values, "base_model_name_or_path": config_values})


HEALTHY = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_dora": False, "rank_pattern": {},
           "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                              "down_proj"]}  # what tiny.train_toy_adapter saves
one_field_off = st.dictionaries(st.sampled_from([
    "r", "lora_alpha", "target_modules", "exclude_modules", "rank_pattern", "alpha_pattern",
    "layers_to_transform", "modules_to_save", "use_dora", "fan_in_fan_out"]),
    config_values | regexes, min_size=1, max_size=2).map(lambda d: {**HEALTHY, **d})


@pytest.fixture(scope="module")
def fuzz_adapter(trained_adapter: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained adapter's weights beside a config the test rewrites for each input."""
    folder = tmp_path_factory.mktemp("fuzz-adapter")
    (folder / "adapter_model.safetensors").write_bytes(
        (trained_adapter / "adapter_model.safetensors").read_bytes())
    return folder


@budget(400)
@given(data=st.one_of(one_field_off.map(lambda d: json.dumps(d).encode()),
                       config_docs.map(lambda d: json.dumps(d).encode()), json_text(json_values)))
def test_adapter_config_reader_and_static_checks(data: bytes, fuzz_adapter: Path) -> None:
    from ftdiag.adapters.static import run_static

    (fuzz_adapter / "adapter_config.json").write_bytes(data)
    survives(lambda: run_static(fuzz_adapter))


# --- GGUF and LoRA GGUF ----------------------------------------------------------------------

SCALAR_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q",
                  11: "q", 12: "d"}
GGUF_KEYS = ["general.architecture", "general.type", "general.alignment", "adapter.type",
             "adapter.lora.alpha", "llama.block_count", "llama.attention.head_count",
             "llama.attention.head_count_kv", "tokenizer.ggml.tokens", "x"]
TENSOR_NAMES = ["blk.0.attn_q.weight", "blk.0.attn_q.weight.lora_a",
                "blk.0.attn_q.weight.lora_b", "blk.1.ffn_up.weight.lora_a",
                "blk.1.ffn_up.weight.lora_b", "token_embd.weight", "blk.0.attn_k.weight"]
QTYPES = [0, 1, 2, 8, 10, 24, 28, 30, 41]  # F32 F16 Q4_0 Q8_0 Q2_K I8 F64 BF16 Q1_0


def gguf_string(draw: st.DrawFn, text: bytes) -> bytes:
    claimed = draw(st.none() | st.sampled_from([0, 2**40, 2**62, 2**64 - 1]))
    return struct.pack("<Q", len(text) if claimed is None else claimed) + text


def gguf_value(draw: st.DrawFn, vtype: int, depth: int = 0) -> bytes:
    if vtype in SCALAR_FORMATS:
        fmt = SCALAR_FORMATS[vtype]
        if fmt in "fd":
            return struct.pack("<" + fmt, draw(st.floats(width=32 if fmt == "f" else 64)))
        if fmt == "?":
            return struct.pack("<B", draw(st.integers(0, 255)))
        size = struct.calcsize(fmt)
        bits = 8 * size
        lo, hi = (0, 2**bits - 1) if fmt.isupper() else (-(2**(bits - 1)), 2**(bits - 1) - 1)
        return struct.pack("<" + fmt, draw(st.integers(lo, min(hi, 64)) | st.integers(lo, hi)))
    if vtype == 8:
        return gguf_string(draw, draw(st.sampled_from([b"llama", b"adapter", b"lora", b"model"])
                                      | st.binary(max_size=8)))
    if vtype == 9 and depth < 2:
        itype = draw(st.sampled_from([0, 4, 6, 8, 9]) | st.integers(0, 20))
        items = [gguf_value(draw, itype, depth + 1) for _ in range(draw(st.integers(0, 3)))]
        claimed = draw(st.none() | st.sampled_from([2**40, 2**63]))
        return struct.pack("<IQ", itype, len(items) if claimed is None else claimed) + \
            b"".join(items)
    return draw(st.binary(max_size=8))


@st.composite
def gguf_files(draw: st.DrawFn, lora: bool) -> bytes:
    """Header, metadata and tensor infos as llama.cpp writes them, then data; some parts lie."""
    magic = draw(st.just(b"GGUF") | st.binary(min_size=4, max_size=4))
    version = draw(st.sampled_from([3, 2, 1]) | st.integers(0, 2**32 - 1))
    kvs = [(b"general.architecture", 8, gguf_string(draw, b"llama"))]
    if lora:
        kvs += [(b"general.type", 8, gguf_string(draw, b"adapter")),
                (b"adapter.type", 8, gguf_string(draw, b"lora"))]
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(GGUF_KEYS)).encode()
        vtype = draw(st.sampled_from([4, 6, 8, 9, 10]) | st.integers(0, 13))
        kvs.append((key, vtype, gguf_value(draw, vtype)))
    tensors, data = [], b""
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(TENSOR_NAMES)).encode()
        dims = draw(st.lists(st.sampled_from([1, 2, 4, 8, 32]) | st.integers(0, 2**64 - 1),
                             max_size=draw(st.sampled_from([2, 5]))))
        qtype = draw(st.sampled_from(QTYPES) | st.integers(0, 2**32 - 1))
        tensors.append(gguf_string(draw, name) + struct.pack(
            f"<I{len(dims)}QIQ", len(dims), *dims, qtype, len(data)))
        data += draw(st.binary(min_size=0, max_size=600))
    head = magic + struct.pack("<IQQ", version, len(tensors), len(kvs)) + b"".join(
        struct.pack("<Q", len(k)) + k + struct.pack("<I", t) + v for k, t, v in kvs)
    head += b"".join(tensors)
    raw = head + bytes(-len(head) % 32) + data
    return raw[:draw(st.integers(0, len(raw)))] if draw(st.booleans()) else raw


@budget(300)
@given(data=gguf_files(lora=False))
def test_gguf_reader(data: bytes, tmp_path_factory: pytest.TempPathFactory) -> None:
    from ftdiag.export.check import is_lora_gguf
    from ftdiag.export.weights import GgufModel, gguf_fields, open_gguf

    path = tmp_path_factory.getbasetemp() / "fuzz.gguf"
    path.write_bytes(data)

    def parse() -> None:
        reader = open_gguf(path)
        gguf_fields(reader)
        is_lora_gguf(reader)
        model = GgufModel(path, reader)
        for module in ("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                       "model.embed_tokens"):
            model.read(module)

    survives(parse)


@budget(300)
@given(data=gguf_files(lora=True))
def test_lora_gguf_reader(data: bytes, trained_adapter: Path,
                          tmp_path_factory: pytest.TempPathFactory) -> None:
    from ftdiag.export.gguf_lora import check_gguf_lora
    from ftdiag.export.lora import read_lora
    from ftdiag.export.weights import open_gguf

    path = tmp_path_factory.getbasetemp() / "fuzz-lora.gguf"
    path.write_bytes(data)
    adapter = read_lora(trained_adapter)
    survives(lambda: check_gguf_lora(path, open_gguf(path), adapter, None))


# --- Modelfile -------------------------------------------------------------------------------

go_templates = st.lists(st.sampled_from([
    "{{", "}}", "{{ .Prompt }}", "{{ .System }}", "{{- .System -}}", "{{ if .System }}",
    "{{ else }}", "{{ end }}", "{{/* c */}}", "{{ range .Messages }}", "{{- ", " -}}", " ", "\n",
    "Title: ", "\\", '"', '"""', "\t"]) | st.text(max_size=4), max_size=24).map("".join)
modelfile_lines = st.one_of(
    st.tuples(st.sampled_from(["FROM", "ADAPTER", "TEMPLATE", "SYSTEM", "PARAMETER", "from",
                               "MESSAGE", "# FROM", "LICENSE"]),
              st.one_of(st.text(max_size=16), go_templates.map(lambda t: f'"""{t}"""'),
                        go_templates.map(lambda t: f'"{t}"'), go_templates,
                        st.sampled_from(["stop <|im_end|>", 'stop "\\u00"', 'stop "\\q"',
                                         "./merged", "~/x"]))).map(" ".join),
    st.text(max_size=20))


@budget(400)
@given(data=st.lists(modelfile_lines, max_size=8).map("\n".join).map(str.encode)
       | st.binary(max_size=64), kind=st.sampled_from(["merged-safetensors", "lora-gguf"]))
def test_modelfile_parser(data: bytes, kind: str, trained_adapter: Path,
                          tmp_path_factory: pytest.TempPathFactory) -> None:
    from ftdiag.export.modelfile import check_modelfile

    folder = tmp_path_factory.getbasetemp()
    (folder / "Modelfile").write_bytes(data)
    survives(lambda: check_modelfile(folder / "Modelfile", folder / "merged", kind,
                                     trained_adapter, None))


# --- loss logs -------------------------------------------------------------------------------

log_numbers = st.floats() | st.integers() | st.none() | st.text(max_size=4) | json_values
log_records = st.fixed_dictionaries({}, optional={
    "step": log_numbers, "loss": log_numbers, "eval_loss": log_numbers, "epoch": log_numbers,
    "grad_norm": log_numbers, "learning_rate": log_numbers, "current_steps": log_numbers,
    "total_steps": log_numbers, "num_input_tokens_seen": log_numbers})
trainer_states = st.fixed_dictionaries({"log_history": st.lists(log_records, max_size=6)
                                        | json_values}, optional={
    "global_step": log_numbers, "max_steps": log_numbers, "num_train_epochs": log_numbers})
yaml_docs = st.one_of(
    st.dictionaries(st.sampled_from(["lr", "learning_rate", "lora_rank", "num_epochs", "x"]),
                    log_numbers, max_size=4).map(lambda d: "\n".join(
                        f"{k}: {json.dumps(v)}" for k, v in d.items())),
    st.text(alphabet="abc: -[]{}&*!|>'\"\n\t#1.e", max_size=40), nested())
jsonl = st.lists(log_records.map(json.dumps) | st.text(max_size=12) | nested(),
                 max_size=6).map("\n".join).map(str.encode)
csv_text = st.lists(st.lists(st.text(max_size=6) | st.sampled_from(["1", "nan", "1e400"]),
                             max_size=4).map(",".join), max_size=5).map(
    lambda rows: "step,loss,eval_loss\n" + "\n".join(rows)).map(str.encode)
run_files = st.one_of(
    st.tuples(st.just("trainer_state.json"), json_text(trainer_states) | json_text(json_values)),
    st.tuples(st.just("log.jsonl"), jsonl),
    st.tuples(st.just("trainer_log.jsonl"), st.lists(log_records.map(
        lambda r: json.dumps({"current_steps": 1, "total_steps": 2, **r})), max_size=5).map(
        "\n".join).map(str.encode) | jsonl),
    st.tuples(st.just("metrics.csv"), csv_text | st.binary(max_size=40)),
)


@budget(400)
@given(log=run_files, training_args=st.none() | yaml_docs, axolotl=st.none() | yaml_docs,
       adapter_config=st.none() | json_text(config_docs))
def test_loss_log_readers(log: tuple[str, bytes], training_args: str | None,
                          axolotl: str | None, adapter_config: bytes | None,
                          tmp_path_factory: pytest.TempPathFactory) -> None:
    from ftdiag.loss.read import read_loss_log

    run = tmp_path_factory.getbasetemp() / "fuzz-run"
    run.mkdir(exist_ok=True)
    for old in run.iterdir():
        old.unlink()
    (run / log[0]).write_bytes(log[1])
    if training_args is not None:
        (run / "training_args.yaml").write_text(training_args)
    if axolotl is not None:
        (run / "README.md").write_text(f"axolotl\nSee axolotl config\n```yaml\n{axolotl}\n```\n")
    if adapter_config is not None:
        (run / "adapter_config.json").write_bytes(adapter_config)
    survives(lambda: read_loss_log(run))


# --- titles / records ------------------------------------------------------------------------

record_docs = st.fixed_dictionaries({}, optional={
    "title": scalars | json_values, "content": scalars, "uid": scalars, "x": json_values})
data_files = st.one_of(
    st.tuples(st.just("titles.txt"), st.text(max_size=60).map(str.encode) | st.binary(max_size=30)),
    st.tuples(st.sampled_from(["data.jsonl", "trn.json"]), st.lists(
        record_docs.map(json.dumps) | nested() | st.text(max_size=8), min_size=1, max_size=4)
        .map("\n".join).map(str.encode)),
    st.tuples(st.just("data.json"), json_text(st.lists(record_docs, max_size=3))),
    st.tuples(st.just("data.csv"), csv_text.map(lambda b: b.replace(b"step", b"title"))))


@budget(200)
@given(data=data_files)
def test_titles_and_records_readers(data: tuple[str, bytes], records_cache: Path) -> None:
    from ftdiag.prompts.records import read_records

    path = records_cache / data[0]
    path.write_bytes(data[1])
    survives(lambda: read_records(path))


@pytest.fixture(scope="module")
def records_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`datasets` caches each file it reads: here in a temp dir, not the user's cache."""
    import datasets

    folder = tmp_path_factory.mktemp("fuzz-records")
    previous = datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = folder / "cache"
    yield folder
    datasets.config.HF_DATASETS_CACHE = previous
