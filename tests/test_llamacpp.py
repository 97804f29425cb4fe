"""A real llama.cpp: llama-server and convert_lora_to_gguf.py built from the pinned source.

The base is the embedded SmolLM2-135M Q4_1 GGUF (the server's model) and its fp32 conversion
(the local reference); the adapter is a random-B LoRA on q/v. The first run builds llama-server
into FTDIAG_CACHE (tests/_llamacpp.py); later runs reuse it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _ab_helpers import write_titles
from _llamacpp import LlamaCpp, ServerHandle, convert_lora, ensure_built, start_server
from typer.testing import CliRunner

from ftdiag.abtest.runtimes import LLAMA_CPP, detect
from ftdiag.cli.app import app
from ftdiag.model.load import embedded_gguf_path, resolve_model_dir
from ftdiag.testing.tiny import save_random_adapter

pytestmark = pytest.mark.slow
runner = CliRunner()
TOKENS = "12"  # short answers: the Q4_1 server and the fp32 reference agree this far


@dataclass
class Served:
    """The pieces every test here reads."""

    llama: LlamaCpp
    gguf: Path  # the server's base model
    base: Path  # its fp32 HF folder (local reference)
    adapter: Path  # the PEFT adapter
    lora: Path  # the adapter as an f32 LoRA GGUF
    titles: Path
    work: Path


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Served:
    from conftest import REAL_CACHE

    os.environ.setdefault("FTDIAG_CACHE", str(REAL_CACHE))
    llama = ensure_built(REAL_CACHE)
    work = tmp_path_factory.mktemp("llamacpp")
    base = resolve_model_dir("smollm2-135m")
    adapter = save_random_adapter(base, work / "adapter", target_modules=["q_proj", "v_proj"],
                                  b_std=0.3, seed=1)
    lora = convert_lora(adapter, base, work / "adapter-f32.gguf", "f32", llama=llama)
    return Served(llama, embedded_gguf_path(), base, adapter, lora,
                  write_titles(work / "titles.jsonl"), work)


@pytest.fixture(scope="session")
def server(built: Served) -> Iterator[ServerHandle]:
    """llama-server with the LoRA loaded (at its default global scale 1)."""
    with start_server(built.gguf, lora=[built.lora], log=built.work / "server.log",
                      llama=built.llama) as handle:
        yield handle


def ab(url: str, built: Served, *extra: str) -> tuple[int, dict[str, Any], str]:
    res = runner.invoke(app, ["ab-test", "--endpoint", url, "--adapter", str(built.adapter),
                              "--titles", str(built.titles), "--max-new-tokens", TOKENS,
                              "--json", *extra])
    doc = json.loads(res.stdout) if res.stdout.strip().startswith("{") else {}
    return res.exit_code, doc, res.stderr


def status(doc: dict[str, Any], code: str) -> list[str]:
    return [c["status"] for c in doc["checks"] if c["code"] == code]


def test_detects_llama_cpp_and_its_lora(server: ServerHandle, built: Served) -> None:
    facts = detect(server.url, timeout=10)
    assert facts.runtime == LLAMA_CPP and facts.version
    assert [(s.id, s.path, s.scale) for s in facts.loras] == [(0, str(built.lora), 1.0)]
    assert facts.models and facts.single_model


def test_a_served_lora_passes_with_names_left_out(server: ServerHandle, built: Served) -> None:
    code, doc, err = ab(server.url, built)
    assert code == 0, err
    s = doc["details"]["endpoint"]
    assert s["runtime"] == LLAMA_CPP
    assert s["requests"]["served-base"]["lora"] == [{"id": 0, "scale": 0.0}]
    assert s["requests"]["served-adapter"]["lora"] == [{"id": 0, "scale": 1.0}]
    assert s["requests"]["served-base"]["cache_prompt"] is False  # no KV reuse across LoRAs
    for check in ("E001", "E002", "E003", "E005"):
        assert status(doc, check) == ["pass"] * (2 if check == "E003" else 1), check
    assert s["informative"] == s["n"] == 4  # the adapter changes every title locally
    assert s["matches_local_adapter"] >= 3


def test_the_old_recipe_base_arm_is_e005_not_e003(server: ServerHandle, built: Served) -> None:
    """`lora: []` sets nothing: llama-server applies the LoRA at its global scale."""
    code, doc, err = ab(server.url, built, "--served-base", "base", "--served-adapter", "base",
                        "--request-extra", '{"lora": [{"id": 0, "scale": 1}]}',
                        "--base-request-extra", '{"lora": []}')
    assert code == 1, err
    assert status(doc, "E003") == ["pass", "pass"]  # one model, any name answers
    e005 = next(f for f in doc["findings"] if f["code"] == "E005")
    assert "global scale 1" in e005["message"] and '"scale": 0' in e005["hint"]
    s = doc["details"]["endpoint"]
    assert s["base_matches_local_adapter"] >= 3  # the served base wrote the adapter's text
    assert status(doc, "E001") == ["fail"]
    e001 = next(f for f in doc["findings"] if f["code"] == "E001")
    assert e001["hint"].startswith("the served base arm carries the adapter (E005)")


def test_no_lora_loaded_is_exit_2_never_a_pass(built: Served) -> None:
    with start_server(built.gguf, log=built.work / "bare.log", llama=built.llama) as bare:
        code, _doc, err = ab(bare.url, built)
    assert code == 2 and "no LoRA loaded" in err and "Traceback" not in err


def test_two_loras_and_none_chosen_is_exit_2(built: Served) -> None:
    other = convert_lora(built.adapter, built.base, built.work / "other.gguf", "q8_0",
                         llama=built.llama)
    with start_server(built.gguf, lora=[built.lora, other], log=built.work / "two.log",
                      llama=built.llama) as two:
        code, _doc, err = ab(two.url, built)
        assert code == 2 and "2 LoRAs loaded and none was chosen" in err
        code, doc, err = ab(two.url, built, "--served-adapter", str(built.lora))
        assert code == 0, err
        assert doc["details"]["endpoint"]["requests"]["served-adapter"]["lora"] == [
            {"id": 0, "scale": 1.0}, {"id": 1, "scale": 0.0}]


def test_a_stalled_server_ends_in_exit_2_within_a_minute(built: Served) -> None:
    with start_server(built.gguf, lora=[built.lora], log=built.work / "stalled.log",
                      llama=built.llama) as stalled:
        os.kill(stalled.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-m", "ftdiag", "ab-test", "--endpoint", stalled.url,
                 "--titles", str(built.titles), "--timeout", "5"],
                capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
            took = time.monotonic() - start
        finally:
            os.kill(stalled.pid, signal.SIGCONT)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "did not answer within 5s" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert took < 60, took


@pytest.mark.parametrize("outtype", ["f32", "q8_0"])
def test_real_converter_output_passes_check_export(built: Served, outtype: str) -> None:
    gguf = (built.lora if outtype == "f32" else
            convert_lora(built.adapter, built.base, built.work / "q8.gguf", outtype,
                         llama=built.llama))
    res = runner.invoke(app, ["check-export", str(gguf), "--adapter", str(built.adapter),
                              "--base", str(built.base), "--json"])
    assert res.exit_code == 0, res.stderr
    assert status(json.loads(res.stdout), "X004") == ["pass"]


def test_rslora_hint_gives_the_alpha_that_fixes_it(built: Served) -> None:
    """llama.cpp scales by α/r; the hint's alpha, written into the file, makes X004 pass."""
    adapter = save_random_adapter(built.base, built.work / "rslora",
                                  target_modules=["q_proj", "v_proj"], r=16, alpha=8,
                                  use_rslora=True)
    gguf = convert_lora(adapter, built.base, built.work / "rslora.gguf", llama=built.llama)
    args = ["check-export", str(gguf), "--adapter", str(adapter), "--base", str(built.base),
            "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 1
    x004 = next(f for f in json.loads(res.stdout)["findings"] if f["code"] == "X004")
    assert "write alpha 32 " in x004["hint"]  # α/√r = 8/4 = 2 = 32/16
    assert "--lora-scaled" in x004["hint"] and " 4" in x004["hint"]
    # layer T said so before any conversion: llama.cpp serves α/r = 0.5, PEFT trained α/√r = 2
    t003 = _t_row(adapter, built.base, "T003")
    assert t003.status == "warn" and t003.evidence["ratio_range"] == [0.25, 0.25]
    setter = Path(sys.executable).with_name("gguf-set-metadata")
    subprocess.run([str(setter), str(gguf), "adapter.lora.alpha", "32", "--force"], check=True,
                   capture_output=True)
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.stdout
    assert status(json.loads(res.stdout), "X004") == ["pass"]


def test_converter_refuses_an_lm_head_adapter(built: Served) -> None:
    """modules_to_save lm_head: the converter stops (what T002 will report without running it)."""
    adapter = save_random_adapter(built.base, built.work / "head",
                                  target_modules=["q_proj", "v_proj"],
                                  modules_to_save=["lm_head"])
    with pytest.raises(RuntimeError, match=r"convert_lora_to_gguf\.py failed"):
        convert_lora(adapter, built.base, built.work / "head.gguf", llama=built.llama)
    t002 = _t_row(adapter, built.base, "T002")  # layer T predicts the refusal
    assert t002.status == "fail" and "refuses the adapter" in t002.message


def _t_row(adapter: Path, base: Path, code: str) -> Any:
    from ftdiag.adapters.check import check_adapter

    report = check_adapter(adapter, base=str(base), static_only=True, runtime="llama.cpp")
    return next(c for c in report.checks if c.code == code)
