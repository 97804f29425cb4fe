"""LoRA on MoE expert parameters (PEFT's target_parameters, lora.ParamWrapper): nested wrappers
are mapped onto the base's 3-D expert tensors, and a wrong rank is still caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _arch import _save_base, train_adapters

from ftdiag import check_adapter


@pytest.fixture(scope="module")
def moe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("moe")
    base = _save_base("mixtral", tmp / "base")
    adapter, _ = train_adapters(base, tmp)
    if not json.loads((adapter / "adapter_config.json").read_text()).get("target_parameters"):
        import peft

        pytest.skip(f"peft {peft.__version__}: all-linear does not wrap MoE expert parameters "
                    "(no target_parameters), so there is no expert LoRA to check")
    return base, adapter


def test_expert_parameters_map_onto_the_base(moe: tuple[Path, Path]) -> None:
    base, adapter = moe
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert "gate_up_proj" in cfg["target_parameters"]  # PEFT's all-linear wrapped the experts
    report = check_adapter(adapter, base, static_only=True)
    assert [f.code for f in report.findings] == []
    a006 = next(f for f in report.checks if f.code == "A006")
    assert "all 14 adapted modules" in a006.message  # 2 layers x (4 attn, gate, 2 experts)


def test_a_wrong_expert_rank_is_a008(moe: tuple[Path, Path], tmp_path: Path) -> None:
    base, adapter = moe
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in adapter.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["rank_pattern"] = {k: 4 for k in cfg["rank_pattern"]}  # saved with r=8 per expert
    (bad / "adapter_config.json").write_text(json.dumps(cfg))
    a008 = next(f for f in check_adapter(bad, base, static_only=True).checks
                if f.code == "A008")
    assert a008.status == "fail"
    assert "mlp.experts.base_layer" in a008.message and "r=4 x 4 experts" in a008.message
