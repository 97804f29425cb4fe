"""--dtype auto: bf16 only where a measured bf16 matmul keeps up with fp32; both arms share it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _ab_helpers import write_titles
from typer.testing import CliRunner

import ftdiag.abtest.local as local
from ftdiag.cli.app import app
from ftdiag.errors import FtdiagError
from ftdiag.model import dtype as dt

runner = CliRunner()
NATIVE = {"fp32": 0.40, "bf16": 0.22}
EMULATED = {"fp32": 0.33, "bf16": 16.5}


def test_auto_picks_bf16_where_the_probe_says_it_is_native() -> None:
    choice = dt.choose_dtype("auto", "cpu", probe=lambda: NATIVE)
    assert choice.dtype == "bfloat16" and "natively" in choice.reason
    assert choice.probe_ms == NATIVE


def test_auto_keeps_fp32_where_bf16_is_emulated() -> None:
    choice = dt.choose_dtype("auto", "cpu", probe=lambda: EMULATED)
    assert choice.dtype == "float32" and "no native bf16" in choice.reason
    assert "50.0x slower" in choice.reason


def test_an_explicit_dtype_runs_no_probe() -> None:
    def probe() -> dict[str, float]:
        raise AssertionError("probed")

    assert dt.choose_dtype("fp32", "cpu", probe=probe).dtype == "float32"
    assert dt.choose_dtype("bf16", "cpu", probe=probe).reason == "asked for (--dtype bf16)"
    with pytest.raises(FtdiagError):
        dt.choose_dtype("int8", "cpu", probe=probe)


def test_the_probe_times_both_dtypes() -> None:
    ms = dt.probe_matmul()
    assert set(ms) == {"fp32", "bf16"} and all(v > 0 for v in ms.values())


def test_both_arms_run_in_the_dtype_auto_chose(tiny_llama: Path, trained_adapter: Path,
                                               tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dt, "probe_matmul", lambda: NATIVE)
    seen: dict[str, Any] = {}
    real = local.generate_arms

    def spy(tokenizer: Any, prompts: list[str], arms: list[Any], *a: Any, **kw: Any) -> Any:
        seen.update({arm.name: next(arm.model.parameters()).dtype for arm in arms})
        return real(tokenizer, prompts, arms, *a, **kw)

    monkeypatch.setattr(local, "generate_arms", spy)
    titles = write_titles(tmp_path / "t.txt", with_refs=False)
    res = runner.invoke(app, ["ab-test", "--adapter", str(trained_adapter), "--base",
                              str(tiny_llama), "--titles", str(titles), "--max-new-tokens", "3",
                              "--json"])
    assert res.exit_code == 0, res.stderr
    got = json.loads(res.stdout)["details"]["summary"]["dtype"]
    assert got["dtype"] == "bfloat16" and "natively" in got["reason"]
    import torch

    assert seen == {"base": torch.bfloat16, "adapter": torch.bfloat16}


def test_doctor_refuses_an_unknown_dtype_before_reading_the_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["doctor", str(tmp_path), "--dtype", "int8"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[0] == \
        "error: unknown --dtype 'int8' (one of auto, fp32, bf16, fp16)"
    assert "Traceback" not in result.output and "L001" not in result.output
