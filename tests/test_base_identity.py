"""A008 (warn): the base given is not the one the adapter was trained on, by name or weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from _adapter_fixtures import copy_adapter, edit_config
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from ftdiag.adapters.fingerprint import weights_fingerprint
from ftdiag.adapters.static import run_static
from ftdiag.cli.app import app
from ftdiag.testing import tiny


def a008(adapter: Path, base: Path) -> list[dict]:
    return [{"status": f.status, "message": f.message, **f.evidence}
            for f in run_static(adapter, base).checks if f.code == "A008" and "given" in f.evidence]


@pytest.fixture(scope="module")
def other_seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same architecture and config.json as tiny_llama, other weights (think X vs X-Instruct)."""
    return tiny.save_base(tmp_path_factory.mktemp("seed1"), "llama", seed=1)


def test_fingerprint_is_dtype_independent_and_seed_dependent(tiny_llama: Path, other_seed: Path,
                                                              tmp_path: Path) -> None:
    half = tmp_path / "bf16"
    shutil.copytree(tiny_llama, half)
    t = load_file(str(half / "model.safetensors"))
    save_file({k: v.to(torch.bfloat16) for k, v in t.items()}, str(half / "model.safetensors"),
              metadata={"format": "pt"})
    fp = weights_fingerprint(tiny_llama)
    assert fp and fp.startswith("sha256:") and weights_fingerprint(half) == fp
    assert (tiny_llama / "config.json").read_bytes() == (other_seed / "config.json").read_bytes()
    assert weights_fingerprint(other_seed) != fp
    assert weights_fingerprint(tmp_path) is None  # no safetensors: not comparable


def test_same_config_other_weights_is_a008_warn(trained_adapter: Path, other_seed: Path) -> None:
    [row] = a008(trained_adapter, other_seed)
    assert row["status"] == "warn" and row["differs"] == ["name", "weights"]
    assert str(other_seed) in row["message"] and row["recorded"] in row["message"]


def test_a_copy_of_the_recorded_base_passes(trained_adapter: Path, tiny_llama: Path,
                                            tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_llama, tmp_path / "copy"))
    [row] = a008(trained_adapter, copy)
    assert row["status"] == "pass" and "weights equal" in row["message"]


def test_recorded_fingerprint_catches_a_replaced_base(trained_adapter: Path, tiny_llama: Path,
                                                      other_seed: Path, tmp_path: Path) -> None:
    """ftdiag_meta.json's fingerprint: the folder at the recorded path now holds other weights."""
    adapter = copy_adapter(trained_adapter, tmp_path / "a")
    base = Path(shutil.copytree(other_seed, tmp_path / "base"))
    edit_config(adapter, base_model_name_or_path=str(base))
    (adapter / "ftdiag_meta.json").write_text(json.dumps(
        {"base": str(base), "base_fingerprint": weights_fingerprint(tiny_llama)}))
    [row] = a008(adapter, base)
    assert row["status"] == "warn" and row["differs"] == ["weights"]


def test_hub_id_is_compared_by_name(trained_adapter: Path, tiny_llama: Path,
                                    tmp_path: Path) -> None:
    adapter = edit_config(copy_adapter(trained_adapter, tmp_path / "a"),
                          base_model_name_or_path="acme/tiny-llama-Instruct")
    [row] = a008(adapter, tiny_llama)
    assert row["status"] == "warn" and row["differs"] == ["name"]
    named = Path(shutil.copytree(tiny_llama, tmp_path / "tiny-llama-Instruct"))
    assert a008(adapter, named)[0]["status"] == "pass"


def test_ab_test_and_doctor_warn_too(trained_adapter: Path, other_seed: Path,
                                     tmp_path: Path) -> None:
    titles = tmp_path / "titles.txt"
    titles.write_text("Steel bottle\n")
    runner = CliRunner()
    res = runner.invoke(app, ["ab-test", "--adapter", str(trained_adapter), "--base",
                              str(other_seed), "--titles", str(titles), "--max-new-tokens", "4",
                              "--json"])
    doc = json.loads(res.stdout)
    assert any(f["code"] == "A008" and f["severity"] == "warn" for f in doc["findings"])
    run = copy_adapter(trained_adapter, tmp_path / "run")
    (run / "ftdiag_meta.json").write_text(json.dumps({"base": str(other_seed)}))
    res = runner.invoke(app, ["doctor", str(run), "--titles", str(titles), "--n", "1",
                              "--max-new-tokens", "4", "--json"])
    doc = json.loads(res.stdout)
    assert any(f["code"] == "A008" and f["severity"] == "warn" for f in doc["findings"])
