"""Hostile and absurd files, as a CI gate meets them: each run ends in seconds, under 1 GB, with
a finding (exit 1) or one error line (exit 2), never a traceback or a hang.

The issue's cases run the real CLI in a child process under a 1 GB address-space limit and a
20 s kill timer; the rest call the library.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from _adapter_fixtures import WEIGHTS, copy_adapter, edit_config
from _export_fixtures import merge_to

from ftdiag.adapters.files import read_adapter
from ftdiag.adapters.keys import PATTERN_BUDGET_S, base_layout, peft_match
from ftdiag.errors import FtdiagError
from ftdiag.export.modelfile import render_go
from ftdiag.runmeta import read_meta

# A hang guard, not a speed target: the 20 s is measured (closing note); a loaded
# 2-core CI machine can take several times longer on a process that imports torch.
SECONDS = 180
MEMORY = 1 << 30
CATASTROPHIC = "(.*.*)*zq"  # Python's re backtracks exponentially in the name's length


@dataclass
class Outcome:
    """How one bounded CLI run ended."""

    code: int
    out: str
    err: str
    seconds: float

    def one_error_line(self, *words: str) -> None:
        assert self.code == 2, (self.code, self.err[-500:])
        assert self.out == "" and "Traceback" not in self.err
        assert len(self.err.strip().splitlines()) == 1 and self.err.startswith("error:")
        for w in words:
            assert w in self.err, self.err


def ftdiag(*args: str, tmp: Path) -> Outcome:
    """`python -m ftdiag ARGS` under `ulimit -v` 1 GB (RLIMIT_AS: past it, allocations fail),
    killed and failed after 20 s."""
    out, err = tmp / "stdout", tmp / "stderr"
    limited = ["sh", "-c", f'ulimit -v {MEMORY // 1024} && exec "$@"', "sh"]
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([*limited, sys.executable, "-m", "ftdiag", *args], stdout=o,
                                stderr=e, env={**os.environ, "COLUMNS": "200"})
        start = time.monotonic()
        try:
            proc.wait(timeout=SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"still running after {SECONDS} s: ftdiag {' '.join(args)}")
    return Outcome(proc.returncode, out.read_text(), err.read_text(), time.monotonic() - start)


@pytest.fixture
def adapter(trained_adapter: Path, tmp_path: Path) -> Path:
    return copy_adapter(trained_adapter, tmp_path / "adapter")


def test_backtracking_target_modules_is_one_line_saying_peft_would_hang(
        adapter: Path, tmp_path: Path) -> None:
    edit_config(adapter, target_modules=CATASTROPHIC)
    run = ftdiag("check-adapter", str(adapter), "--static-only", tmp=tmp_path)
    run.one_error_line("target_modules '(.*.*)*zq'", "PEFT would hang")
    assert run.seconds < PATTERN_BUDGET_S + 10


def test_backtracking_rank_pattern_key_is_one_error(adapter: Path) -> None:
    edit_config(adapter, rank_pattern={CATASTROPHIC: 4})
    with pytest.raises(FtdiagError, match=r"rank_pattern '.*PEFT uses"):
        read_adapter(adapter)


@pytest.mark.parametrize(("change", "words"), [
    ({"target_modules": "(q_proj"}, "not a regular expression"),
    ({"exclude_modules": "*"}, "not a regular expression"),
    ({"rank_pattern": {"q_proj": "eight"}}, "rank_pattern"),
    ({"lora_alpha": [16]}, "lora_alpha"),
    ({"target_modules": [1, 2]}, "target_modules"),
    ({"layers_to_transform": {"a": 1}}, "layers_to_transform"),
])
def test_config_field_peft_would_misread_is_one_error(adapter: Path, change: dict[str, object],
                                                      words: str) -> None:
    edit_config(adapter, **change)
    with pytest.raises(FtdiagError, match=words):
        read_adapter(adapter)


def test_pattern_off_the_main_thread_is_bounded_by_a_child_process() -> None:
    results: list[object] = []

    def match(pattern: str) -> None:
        try:
            results.append(peft_match(pattern, "model.layers.0.self_attn.q_proj.x",
                                      "target_modules"))
        except FtdiagError as exc:
            results.append(exc)

    for pattern in (r".*\.q_proj\.x", CATASTROPHIC):
        worker = threading.Thread(target=match, args=(pattern,))
        worker.start()
        worker.join(timeout=PATTERN_BUDGET_S + 10)
        assert not worker.is_alive()
    assert results[0] is True and isinstance(results[1], FtdiagError)


def test_base_config_claiming_a_billion_layers_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "num_hidden_layers": 10**9, "hidden_size": 8,
        "intermediate_size": 8, "num_attention_heads": 2, "vocab_size": 16}))
    with pytest.raises(FtdiagError, match="num_hidden_layers is 1000000000"):
        base_layout(tmp_path)


@pytest.fixture(scope="module")
def merged(tiny_llama: Path, trained_adapter: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Path:
    return merge_to(tiny_llama, trained_adapter, tmp_path_factory.mktemp("hostile") / "merged")


def test_ten_megabyte_template_is_a_finding_with_the_sizes(
        merged: Path, trained_adapter: Path, tiny_llama: Path, tmp_path: Path) -> None:
    modelfile = merged.parent / "Modelfile"
    modelfile.write_text(f'FROM ./merged\nTEMPLATE """{" " * 10_000_000}"""\n'
                         'PARAMETER stop "<|endoftext|>"\n')
    run = ftdiag("check-export", str(merged), "--adapter", str(trained_adapter), "--base",
                 str(tiny_llama), "--modelfile", str(modelfile), "--json", "--strict",
                 tmp=tmp_path)
    assert run.code == 1 and "Traceback" not in run.err
    x005 = next(c for c in json.loads(run.out)["checks"] if c["code"] == "X005")
    assert x005["status"] == "warn" and "TEMPLATE is 10,000,000 characters" in x005["message"]


@pytest.mark.parametrize("unit", ["{{", " ", "{{ .Prompt }}", "{{- .Prompt -}}\n",
                                  "{{ if .System }}"])
def test_rendering_a_one_megabyte_template_is_linear(unit: str) -> None:
    template = unit * (1_000_000 // len(unit))
    start = time.monotonic()
    render_go(template, {"System": "", "Prompt": "p"})
    assert time.monotonic() - start < 5  # was minutes for "{{" and " " (quadratic regexes)


def test_trainer_state_nested_200000_deep_is_one_line(tmp_path: Path) -> None:
    state = tmp_path / "run" / "trainer_state.json"
    state.parent.mkdir()
    state.write_text('{"log_history": ' + "[" * 200_000 + "]" * 200_000 + "}")
    run = ftdiag("loss-report", str(state), tmp=tmp_path)
    run.one_error_line("nested deeper than 100 levels")


def test_ftdiag_meta_nested_deep_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "ftdiag_meta.json").write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(FtdiagError, match="nested deeper"):
        read_meta(tmp_path)


def test_yaml_alias_bomb_is_one_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "trainer_log.jsonl").write_text(
        json.dumps({"current_steps": 1, "total_steps": 2, "loss": 1.0}) + "\n")
    lines = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    (run_dir / "training_args.yaml").write_text("\n".join(lines) + "\n")
    run = ftdiag("loss-report", str(run_dir), tmp=tmp_path)
    run.one_error_line("training_args.yaml", "alias")


def test_a_fifo_named_trainer_state_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "trainer_state.json"
    os.mkfifo(fifo)
    run = ftdiag("loss-report", str(fifo), tmp=tmp_path)
    run.one_error_line("not a regular file")


def _safetensors(header: dict[str, object] | None, data: bytes = b"",
                 claimed: int | None = None) -> bytes:
    raw = json.dumps(header).encode() if header is not None else b""
    return struct.pack("<Q", len(raw) if claimed is None else claimed) + raw + data


@pytest.mark.parametrize(("weights", "words"), [
    (_safetensors(None, b"{}" * 8, claimed=2**50), "header length"),
    (_safetensors({"base_model.model.x.lora_A.weight": {
        "dtype": "F32", "shape": [2**31, 2**31], "data_offsets": [0, 16]}}, bytes(16)),
     "inconsistent size"),
    (_safetensors({"w": {"dtype": "F32", "shape": ["a"], "data_offsets": [0, 4]}}, bytes(4)),
     "no valid dtype"),
    (_safetensors(None, b"[" * 5000 + b"]" * 5000, claimed=10_000), "nested deeper"),
], ids=["header of 2^50 bytes", "shape [2^31, 2^31]", "shape of strings", "deep header"])
def test_lying_safetensors_header_is_one_line(adapter: Path, tmp_path: Path, weights: bytes,
                                              words: str) -> None:
    (adapter / WEIGHTS).write_bytes(weights)
    run = ftdiag("check-adapter", str(adapter), "--static-only", tmp=tmp_path)
    run.one_error_line(words)


def _gguf_string(text: bytes, claimed: int | None = None) -> bytes:
    return struct.pack("<Q", len(text) if claimed is None else claimed) + text


@pytest.mark.parametrize(("body", "words"), [
    (struct.pack("<QQ", 2**40, 0), "tensors, more than the file holds"),
    (struct.pack("<QQ", 0, 1) + _gguf_string(b"abc", claimed=2**62), "past the end"),
    (struct.pack("<QQ", 0, 1) + _gguf_string(b"x") + struct.pack("<IIQ", 9, 0, 2**40),
     "past the end"),  # an array of 2^40 bytes: gguf-py looped on it for hours
    (struct.pack("<QQ", 0, 1) + _gguf_string(b"x") + struct.pack("<IIQ", 9, 8, 2**40),
     "more than the file holds"),
], ids=["2^40 tensors", "string of 2^62 bytes", "array of 2^40 bytes", "array of 2^40 strings"])
def test_lying_gguf_is_one_line(trained_adapter: Path, tmp_path: Path, body: bytes,
                                words: str) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + struct.pack("<I", 3) + body)
    run = ftdiag("check-export", str(gguf), "--adapter", str(trained_adapter), tmp=tmp_path)
    run.one_error_line("cannot read GGUF file", words)


@pytest.mark.parametrize(("text", "words"), [
    ('{"title": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested deeper"),  # pandas' ujson
    ("null", "not an array of JSON objects"),  # pyarrow's JSON reader
], ids=["nested 50,000 deep", "a lone null"])
def test_json_data_file_that_crashed_datasets_is_one_error(text: str, words: str,
                                                           tmp_path: Path) -> None:
    """`datasets` died of a segfault on these: the check runs in a child process."""
    data = tmp_path / "titles.json"
    data.write_text(text)
    code = ("from ftdiag.prompts.records import read_records\n"
            "from ftdiag.errors import FtdiagError\n"
            f"try:\n    read_records({str(data)!r})\nexcept FtdiagError as exc:\n    print(exc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False,
                          env={**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0 and words in proc.stdout, proc.stderr[-500:]


@pytest.mark.parametrize("escape", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ self.__init__.__globals__.__builtins__.open(MARK, 'w').write('x') }}",
    "{{ cycler.__init__.__globals__.os.system('touch ' ~ MARK) }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c('touch ' ~ MARK) }}{% endfor %}",
])
def test_chat_template_escaping_the_sandbox_writes_nothing(escape: str, tmp_path: Path) -> None:
    from ftdiag.prompts.template import CHAT_TEMPLATE, PromptTemplate
    from ftdiag.testing import tiny

    mark = tmp_path / "escaped"
    tok = tiny.build_tokenizer()
    tok.chat_template = "{% set MARK = '" + str(mark) + "' %}" + escape
    try:
        PromptTemplate(CHAT_TEMPLATE).render("Steel bottle", tok)
    except Exception as exc:  # transformers' sandbox raises its own SecurityError/UndefinedError
        assert "Security" in type(exc).__name__ or "Undefined" in type(exc).__name__, exc
    assert not mark.exists()


def test_word_diff_of_runaway_outputs_is_capped_and_loses_no_text() -> None:
    from ftdiag.generation.metrics import MAX_DIFF_WORDS, word_diff

    a = " ".join(f"w{i}" for i in range(50_000))
    b = " ".join(f"w{i}" for i in range(0, 50_000, 2))
    ops = word_diff(a, b)
    assert "".join(o.text for o in ops if o.op != "insert") == a
    assert "".join(o.text for o in ops if o.op != "delete") == b
    assert ops[-2].op == "delete" and ops[-2].text.startswith(f"w{MAX_DIFF_WORDS}")
