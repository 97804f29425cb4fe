"""A012 stale checkpoint, A013 tied-embedding update, A014 quantized training base (+ R007)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _adapter_fixtures import copy_adapter, edit_config
from _variants import build_adapter

from ftdiag.adapters.static import run_static
from ftdiag.export.merge import precision_check
from ftdiag.findings import Finding


def check(adapter: Path, base: Path | None, code: str) -> Finding:
    return next(f for f in run_static(adapter, base).checks if f.code == code)


def _checkpoint(run: Path, adapter: Path, step: int, best: str | None = None) -> Path:
    ckpt = copy_adapter(adapter, run / f"checkpoint-{step}")
    state = {"global_step": step, "best_model_checkpoint": best}
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    return ckpt


def test_earlier_checkpoint_of_a_longer_run_is_a012(trained_adapter: Path, tiny_llama: Path,
                                                   tmp_path: Path) -> None:
    run = tmp_path / "run"
    early = _checkpoint(run, trained_adapter, 500)
    late = _checkpoint(run, trained_adapter, 3000)
    found = check(early, tiny_llama, "A012")
    assert found.status == "warn" and found.evidence["last_step"] == 3000
    assert str(late) in found.message
    assert check(late, tiny_llama, "A012").status == "pass"
    for name in ("adapter_config.json", "adapter_model.safetensors"):  # the final adapter
        shutil.copy(trained_adapter / name, run / name)
    assert check(late, tiny_llama, "A012").status == "warn"
    assert check(run, tiny_llama, "A012").status == "pass"


def test_the_best_checkpoint_is_not_stale(trained_adapter: Path, tiny_llama: Path,
                                         tmp_path: Path) -> None:
    run = tmp_path / "run"
    best = _checkpoint(run, trained_adapter, 500)
    _checkpoint(run, trained_adapter, 1000, best=str(best))
    assert check(best, tiny_llama, "A012").status == "pass"


@pytest.mark.parametrize("arch,save", [("gpt2", ["lm_head"]), ("qwen2", ["embed_tokens"])])
def test_update_to_one_side_of_tied_embeddings_is_a013(arch: str, save: list[str],
                                                       request: pytest.FixtureRequest,
                                                       tmp_path: Path) -> None:
    base = Path(request.getfixturevalue(f"tiny_{arch}"))
    adapter = build_adapter(base, tmp_path / "a", arch, modules_to_save=save)
    found = check(adapter, base, "A013")
    assert found.status == "warn" and "tie_word_embeddings" in found.message


def test_lora_on_tied_embeddings_is_a013_unless_kept_tied(tiny_qwen2: Path,
                                                          tmp_path: Path) -> None:
    targets = ["q_proj", "embed_tokens"]
    adapter = build_adapter(tiny_qwen2, tmp_path / "a", "qwen2", target_modules=targets)
    assert check(adapter, tiny_qwen2, "A013").status == "warn"
    kept = build_adapter(tiny_qwen2, tmp_path / "b", "qwen2", target_modules=targets,
                         ensure_weight_tying=True)
    assert check(kept, tiny_qwen2, "A013").status == "pass"


def test_untied_base_takes_its_own_lm_head(tiny_llama: Path, tmp_path: Path) -> None:
    adapter = build_adapter(tiny_llama, tmp_path / "a", "llama", modules_to_save=["lm_head"])
    assert check(adapter, tiny_llama, "A013").status == "pass"


def test_base_ties_read_from_the_weights_when_config_is_silent(tiny_gpt2: Path,
                                                               tmp_path: Path) -> None:
    from ftdiag.adapters.embeddings import base_ties

    base = Path(shutil.copytree(tiny_gpt2, tmp_path / "gpt2"))
    cfg = json.loads((base / "config.json").read_text())
    cfg.pop("tie_word_embeddings", None)
    (base / "config.json").write_text(json.dumps(cfg))
    assert base_ties(base) is True  # the file holds wte but no lm_head.weight


def test_adapter_trained_on_a_4bit_base_is_a014(trained_adapter: Path, tiny_llama: Path,
                                                tmp_path: Path) -> None:
    adapter = edit_config(copy_adapter(trained_adapter, tmp_path / "a"),
                          base_model_name_or_path="unsloth/tiny-llama-bnb-4bit")
    found = check(adapter, tiny_llama, "A014")
    assert found.status == "warn" and found.evidence["trained_on"] == "bitsandbytes"
    merge = precision_check(tiny_llama, adapter)
    assert merge.code == "R007" and merge.status == "warn" and "bnb-4bit" in merge.message
    assert precision_check(tiny_llama, trained_adapter).status == "pass"


def test_recorded_base_with_quantization_config_is_a014(trained_adapter: Path, tiny_llama: Path,
                                                        tmp_path: Path) -> None:
    quant = Path(shutil.copytree(tiny_llama, tmp_path / "q"))
    cfg = json.loads((quant / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    (quant / "config.json").write_text(json.dumps(cfg))
    adapter = edit_config(copy_adapter(trained_adapter, tmp_path / "a"),
                          base_model_name_or_path=str(quant))
    assert check(adapter, tiny_llama, "A014").status == "warn"
    assert check(adapter, quant, "A014").status == "pass"  # same quantized base: fine
    assert check(trained_adapter, tiny_llama, "A014").status == "pass"
