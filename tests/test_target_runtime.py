"""Layer T: `check-adapter --runtime NAME` says what that runtime will do with the adapter.

Adapters are saved by PEFT the way users configure them (rsLoRA, DoRA, alpha_pattern,
modules_to_save); the expected treatment is each runtime's row in adapters.target.RULES. The
llama.cpp rows are also checked against the real converter in tests/test_llamacpp.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ftdiag.adapters.check import check_adapter
from ftdiag.adapters.target import RULES
from ftdiag.cli.app import app
from ftdiag.testing.tiny import save_random_adapter

TARGETS = ["q_proj", "v_proj"]


def t_rows(adapter: Path, base: Path, runtime: str) -> dict[str, Any]:
    report = check_adapter(adapter, base=str(base), static_only=True, runtime=runtime)
    assert "T" in report.layers_run
    return {c.code: c for c in report.checks if c.code.startswith("T")}


@pytest.fixture(scope="module")
def variants(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("variants")

    def save(name: str, **config: Any) -> Path:
        return save_random_adapter(tiny_llama, work / name, target_modules=TARGETS, r=4,
                                   alpha=8, **config)

    return {"plain": save("plain"), "rslora": save("rslora", use_rslora=True),
            "dora": save("dora", use_dora=True),
            "pattern": save("pattern", alpha_pattern={"q_proj": 32}),
            "head": save("head", modules_to_save=["lm_head"])}


@pytest.mark.parametrize("runtime", list(RULES))
def test_a_plain_adapter_passes_every_runtime(variants: dict[str, Path], tiny_llama: Path,
                                              runtime: str) -> None:
    rows = t_rows(variants["plain"], tiny_llama, runtime)
    assert {c.status for c in rows.values()} == {"pass"}, {k: c.message for k, c in rows.items()}


@pytest.mark.parametrize(("runtime", "status", "ratio"), [
    ("llama.cpp", "warn", 0.5),  # α/r instead of α/√r at r = 4
    ("ollama", "warn", 0.5),
    ("sglang", "warn", 0.5),
    ("vllm", "pass", None),  # peft_helper scales α/√r for use_rslora
    ("tgi", "pass", None),
])
def test_rslora_scaling_per_runtime(variants: dict[str, Path], tiny_llama: Path, runtime: str,
                                    status: str, ratio: float | None) -> None:
    t003 = t_rows(variants["rslora"], tiny_llama, runtime)["T003"]
    assert t003.status == status, t003.message
    if ratio is not None:
        assert t003.evidence["ratio_range"] == [pytest.approx(ratio), pytest.approx(ratio)]
        assert "use_rslora served as α/r" in t003.message


@pytest.mark.parametrize(("runtime", "status"), [
    ("llama.cpp", "fail"), ("vllm", "fail"), ("ollama", "fail"),  # the adapter is refused
    ("tgi", "warn"), ("sglang", "warn"),  # the magnitudes are left out
])
def test_dora_per_runtime(variants: dict[str, Path], tiny_llama: Path, runtime: str,
                          status: str) -> None:
    t003 = t_rows(variants["dora"], tiny_llama, runtime)["T003"]
    assert t003.status == status and "DoRA" in t003.message


def test_alpha_pattern_is_collapsed_to_one_alpha(variants: dict[str, Path],
                                                 tiny_llama: Path) -> None:
    t003 = t_rows(variants["pattern"], tiny_llama, "vllm")["T003"]
    assert t003.status == "warn" and "collapsed" in t003.message
    assert t003.evidence["ratio_range"] == [pytest.approx(0.25), pytest.approx(0.25)]  # 8 / 32


@pytest.mark.parametrize(("runtime", "status"), [
    ("llama.cpp", "fail"), ("vllm", "fail"), ("tgi", "warn"), ("sglang", "warn")])
def test_modules_to_save_per_runtime(variants: dict[str, Path], tiny_llama: Path, runtime: str,
                                     status: str) -> None:
    t002 = t_rows(variants["head"], tiny_llama, runtime)["T002"]
    assert t002.status == status and "lm_head" in t002.message
    assert t002.evidence["modules_to_save"] == ["lm_head.weight"]


def test_a_text_adapter_on_a_multimodal_base_is_t001(variants: dict[str, Path], tiny_llama: Path,
                                                     tmp_path: Path) -> None:
    wrapped = tmp_path / "base-vlm"
    shutil.copytree(tiny_llama, wrapped)
    cfg = json.loads((wrapped / "config.json").read_text())
    cfg["architectures"] = ["Gemma3ForConditionalGeneration"]
    (wrapped / "config.json").write_text(json.dumps(cfg))
    assert t_rows(variants["plain"], wrapped, "vllm")["T001"].status == "fail"
    assert t_rows(variants["plain"], wrapped, "llama.cpp")["T001"].status == "pass"


def test_cli_runtime_option_and_unknown_name(variants: dict[str, Path], tiny_llama: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["check-adapter", str(variants["rslora"]), "--base", str(tiny_llama),
                              "--static-only", "--runtime", "llama.cpp@b4000", "--json"])
    assert res.exit_code == 0, res.stderr  # a warn
    doc = json.loads(res.stdout)
    assert "T" in doc["layers"]["run"]
    assert [f["code"] for f in doc["findings"] if f["code"].startswith("T")] == ["T003"]
    for bad, words in (("triton", "unknown --runtime 'triton'"),
                       ("vllm@latest!", "'latest!' is not a version")):
        res = runner.invoke(app, ["check-adapter", str(variants["plain"]), "--runtime", bad])
        lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
        assert res.exit_code == 2 and len(lines) == 1 and words in lines[0], res.stderr


def test_without_runtime_layer_t_is_skipped(variants: dict[str, Path], tiny_llama: Path) -> None:
    report = check_adapter(variants["plain"], base=str(tiny_llama), static_only=True)
    assert report.layers_skipped["T"] == "no --runtime given"
    assert not [c for c in report.checks if c.code.startswith("T")]


def test_check_export_and_doctor_take_the_same_option(variants: dict[str, Path],
                                                      tiny_llama: Path, tmp_path: Path) -> None:
    from _export_fixtures import merge_to

    from ftdiag.export.check import check_export

    merged = merge_to(tiny_llama, variants["rslora"], tmp_path / "merged")
    report = check_export(merged, variants["rslora"], str(tiny_llama), runtime="llama.cpp")
    assert "T" in report.layers_run
    assert next(c for c in report.checks if c.code == "T003").status == "warn"
    res = CliRunner().invoke(app, ["doctor", str(tmp_path), "--runtime", "nope"])
    assert res.exit_code == 2 and "unknown --runtime 'nope'" in res.stderr
