"""A011: adapter_config.json that disagrees with its weights, or that PEFT cannot load, fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _adapter_fixtures import copy_adapter, edit_config, rewrite
from typer.testing import CliRunner

from ftdiag.adapters.check import check_adapter
from ftdiag.adapters.static import run_static
from ftdiag.cli.app import app

ARCHS = ["llama", "gpt2", "qwen2"]


@pytest.fixture(params=ARCHS)
def arch(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def base(arch: str, request: pytest.FixtureRequest) -> Path:
    return Path(request.getfixturevalue(f"tiny_{arch}"))


@pytest.fixture
def broken(arch: str, request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    name = "trained_adapter" if arch == "llama" else f"trained_{arch}_adapter"
    return copy_adapter(Path(request.getfixturevalue(name)), tmp_path / "adapter")


def a011(adapter: Path, base: Path | None) -> list[str]:
    report = run_static(adapter, base)
    return [p for f in report.findings if f.code == "A011" for p in f.evidence["problems"]]


def test_config_rank_differs_from_tensor_rank(broken: Path, base: Path) -> None:
    edit_config(broken, r=8)  # tensors have rank 4
    problems = a011(broken, base)
    assert problems and "rank 4 in the weights, r=8 in the config" in problems[0]


def test_adapter_peft_cannot_load_never_passes(broken: Path, base: Path) -> None:
    """The issue's case: r=8 in the config, rank-4 tensors. PEFT refuses it; so do we."""
    edit_config(broken, r=8)
    report = check_adapter(broken, base)
    assert report.verdict == "fail" and "A011" in report.codes()


def test_lora_a_and_b_ranks_disagree(broken: Path, base: Path) -> None:
    rewrite(broken, lambda t: {k: v[:2] if ".lora_A." in k else v for k, v in t.items()})
    assert any("lora_A has rank 2 but lora_B has rank 4" in p for p in a011(broken, base))


def test_rank_pattern_differs_from_the_tensors(broken: Path, base: Path, arch: str) -> None:
    edit_config(broken, rank_pattern={"c_fc" if arch == "gpt2" else "q_proj": 2})
    assert any("rank_pattern=2" in p for p in a011(broken, base))


def test_dora_flag_without_magnitude_vectors(broken: Path, base: Path) -> None:
    edit_config(broken, use_dora=True)
    assert any("use_dora" in p for p in a011(broken, base))


def test_alpha_edited_after_training_is_a011(broken: Path, base: Path) -> None:
    """ftdiag_meta.json records r/lora_alpha at training; the config says another scaling."""
    (broken / "ftdiag_meta.json").write_text(json.dumps(
        {"hyperparameters": {"lora_r": 4, "lora_alpha": 8}}))
    assert "A011" not in run_static(broken, base).codes()
    edit_config(broken, lora_alpha=64)
    assert any("lora_alpha=64 in the config but 8 at training" in p for p in a011(broken, base))


def test_target_modules_vs_tensor_names_without_a_base(broken: Path, arch: str) -> None:
    edit_config(broken, target_modules=["c_fc"] if arch == "gpt2" else ["q_proj"])
    assert any("not selected by target_modules" in p for p in a011(broken, None))


def test_missing_lora_b_half(broken: Path, base: Path) -> None:
    rewrite(broken, lambda t: {k: v for k, v in t.items()
                               if not (".lora_B." in k and ".0." in k)})
    assert any("has no lora_B tensor" in p for p in a011(broken, base))


def test_loader_error_is_a011_with_the_loaders_reason(trained_adapter: Path, tiny_llama: Path,
                                                      tmp_path: Path) -> None:
    """A config the static layer cannot judge but PEFT rejects: fail with PEFT's words."""
    adapter = edit_config(copy_adapter(trained_adapter, tmp_path / "a"), bias="bogus")
    assert "A011" not in run_static(adapter, tiny_llama).codes()
    report = check_adapter(adapter, tiny_llama)
    found = [f for f in report.findings if f.code == "A011"]
    assert report.verdict == "fail" and found
    assert "bogus" in found[0].evidence["loader_error"]
    result = CliRunner().invoke(app, ["check-adapter", str(adapter), "--base", str(tiny_llama)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "PEFT cannot load the adapter" in result.stdout


def test_healthy_adapter_passes_a011(broken: Path, base: Path) -> None:
    """`broken` is still an untouched copy of the healthy adapter here."""
    report = run_static(broken, base)
    assert next(f for f in report.checks if f.code == "A011").status == "pass"


def test_ab_test_and_doctor_report_the_loader_error_as_a011(trained_adapter: Path,
                                                           tiny_llama: Path,
                                                           tmp_path: Path) -> None:
    adapter = edit_config(copy_adapter(trained_adapter, tmp_path / "a"), bias="bogus")
    titles = tmp_path / "titles.txt"
    titles.write_text("Steel bottle\n")
    runner = CliRunner()
    for argv in (["ab-test", "--adapter", str(adapter), "--base", str(tiny_llama),
                  "--titles", str(titles)], ["doctor", str(adapter), "--base", str(tiny_llama),
                                             "--titles", str(titles)]):
        res = runner.invoke(app, [*argv, "--max-new-tokens", "4", "--json"])
        doc = json.loads(res.stdout)
        assert res.exit_code == 1 and doc["verdict"] == "fail", argv[0]
        a011 = [f for f in doc["findings"] if f["code"] == "A011"]
        assert a011 and "bogus" in a011[0]["evidence"]["loader_error"], argv[0]
