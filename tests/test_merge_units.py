"""ftdiag merge's parts on inputs written here: R007 from config.json, probes, --out, B002.

The base and adapter are config files written by hand; the logits are small tensors whose
top-1 tokens are chosen so the first divergent position is known.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ftdiag.errors import FtdiagError
from ftdiag.export.merge import _check_out, merge_adapter, precision_check, probe_prompts, verify
from ftdiag.findings import Finding
from ftdiag.prompts.template import CHAT_TEMPLATE

TITLES = ["Stainless steel water bottle", "Wireless headphones with noise cancelling",
          "Organic cotton t-shirt"]


def folder(path: Path, name: str, content: dict[str, object]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_text(json.dumps(content))
    return path


def base(tmp_path: Path, **config: object) -> Path:
    return folder(tmp_path / "base", "config.json", {"model_type": "llama", **config})


def adapter(tmp_path: Path, recorded_base: str) -> Path:
    return folder(tmp_path / "adapter", "adapter_config.json",
                  {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"],
                   "base_model_name_or_path": recorded_base})


def test_r007_passes_on_a_float32_base(tmp_path: Path) -> None:
    assert precision_check(base(tmp_path, torch_dtype="float32")) == Finding(
        "R007", "pass", "base in float32; merged in fp32", "", {"dtype": "float32"})


def test_r007_reads_dtype_under_either_key_and_defaults_to_float32(tmp_path: Path) -> None:
    assert precision_check(base(tmp_path / "a", dtype="bfloat16")).evidence == {
        "dtype": "bfloat16"}
    assert precision_check(base(tmp_path / "b")).message == "base in float32; merged in fp32"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "half", "fp16", "bf16"])
def test_r007_warns_on_a_half_precision_base(tmp_path: Path, dtype: str) -> None:
    assert precision_check(base(tmp_path, torch_dtype=dtype)) == Finding(
        "R007", "warn", f"base stored in {dtype}; merged in fp32 so the update is not rounded "
        "away", "the merged model is saved in fp32", {"dtype": dtype})


def test_r007_warns_on_a_quantized_base_with_its_method(tmp_path: Path) -> None:
    found = precision_check(base(tmp_path, quantization_config={"quant_method": "gptq"}))
    assert found == Finding("R007", "warn", "base is quantized (gptq); dequantized to fp32 before "
                            "merging", "merge into the full-precision base when you have it",
                            {"quantization": "gptq"})
    unnamed = precision_check(base(tmp_path / "x", quantization_config={"bits": 4}))
    assert unnamed.evidence == {"quantization": "?"}
    listed = precision_check(base(tmp_path / "y", quantization_config=["odd"]))
    assert listed.evidence == {"quantization": "?"}


def test_r007_warns_when_the_adapter_was_fitted_to_a_quantized_base(tmp_path: Path) -> None:
    found = precision_check(base(tmp_path, torch_dtype="float32"),
                            adapter(tmp_path, "org/model-bnb-4bit"))
    assert found == Finding(
        "R007", "warn", "the adapter was trained against a bitsandbytes-quantized base (base name "
        "'org/model-bnb-4bit'); merging it into this float32 base changes what it does",
        "the update was fitted to the dequantized weights: serve base + adapter on the quantized "
        "base, or re-train on the full-precision one",
        {"quantization": "bitsandbytes", "trained_on": "base name 'org/model-bnb-4bit'",
         "dtype": "float32"})


def test_r007_on_a_quantized_base_reports_the_base_not_the_training(tmp_path: Path) -> None:
    found = precision_check(base(tmp_path, quantization_config={"quant_method": "awq"}),
                            adapter(tmp_path, "org/model-bnb-4bit"))
    assert found.evidence == {"quantization": "awq"}


def test_r007_ignores_a_plain_recorded_base_and_a_folder_without_config(tmp_path: Path) -> None:
    b = base(tmp_path, torch_dtype="float32")
    assert precision_check(b, adapter(tmp_path, "org/plain")).status == "pass"
    (tmp_path / "empty").mkdir()
    assert precision_check(b, tmp_path / "empty").status == "pass"


def test_probe_prompts_use_the_recorded_template_else_the_default(tmp_path: Path) -> None:
    default = probe_prompts(tmp_path, None)
    assert default == [f"[SYSTEM]\nYou are an assistant that writes detailed product "
                       f"descriptions from a given title.\n[USER]\nTitle: {t}\n[ASSISTANT]\n"
                       for t in TITLES]
    folder(tmp_path, "ftdiag_meta.json", {"template": "<{title}>"})
    assert probe_prompts(tmp_path, None) == [f"<{t}>" for t in TITLES]
    folder(tmp_path, "ftdiag_meta.json", {"template": CHAT_TEMPLATE})
    assert probe_prompts(tmp_path, None) == default


def test_out_may_be_missing_empty_or_forced(tmp_path: Path) -> None:
    _check_out(tmp_path / "missing", force=False)
    (tmp_path / "empty").mkdir()
    _check_out(tmp_path / "empty", force=False)
    folder(tmp_path / "full", "x.txt", {})
    _check_out(tmp_path / "full", force=True)


def test_out_that_is_a_file_or_not_empty_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(FtdiagError) as err:
        _check_out(tmp_path / "file", force=True)
    assert str(err.value) == f"--out {tmp_path / 'file'} is a file, expected a folder"
    folder(tmp_path / "full", "x.txt", {})
    with pytest.raises(FtdiagError) as err:
        _check_out(tmp_path / "full", force=False)
    assert str(err.value) == f"--out {tmp_path / 'full'} is not empty (pass --force to replace it)"


def logits(*top: int) -> torch.Tensor:
    """One prompt's logits over a 3-token vocab whose top-1 token at each position is given."""
    out = torch.zeros(len(top), 3)
    for pos, tok in enumerate(top):
        out[pos, tok] = 10.0
    return out


def test_b002_passes_when_the_saved_model_gives_the_same_logits() -> None:
    ref = [logits(0, 1), logits(2)]
    found = verify(ref, [t.clone() for t in ref])
    assert found == Finding("B002", "pass", "saved merged model ≡ base+adapter on 2 probe "
                            "prompts: max |Δlogit| 0 ≤ 0.002", "",
                            {"max_abs_logit_diff": 0.0, "tolerance": pytest.approx(0.002),
                             "first_divergent_position": None})


def test_b002_fails_and_counts_positions_across_prompts() -> None:
    ref = [logits(0, 1), logits(2, 2, 0)]
    merged = [logits(0, 1), logits(2, 1, 1)]  # prompt 2, position 1: the 3rd position overall
    found = verify(ref, merged)
    assert (found.status, found.message) == (
        "fail", "saved merged model differs from base+adapter: max |Δlogit| 10 > 0.002 on 2 "
        "probe prompts")
    assert found.hint == "check tied embeddings / modules_to_save; re-run ftdiag merge"
    assert found.evidence["first_divergent_position"] == 3


def test_b002_a_gap_that_keeps_every_top_token_has_no_divergent_position() -> None:
    ref = [logits(0, 1)]
    found = verify(ref, [ref[0] + 1.0])
    assert found.status == "fail" and found.evidence["first_divergent_position"] is None


def test_b002_offsets_add_up_over_every_earlier_prompt() -> None:
    ref = [logits(0, 1), logits(2), logits(1, 1)]
    merged = [logits(0, 1), logits(2), logits(1, 0)]  # 2 + 1 earlier positions, then index 1
    assert verify(ref, merged).evidence["first_divergent_position"] == 4


def test_merge_refuses_a_non_empty_out_by_default(tmp_path: Path) -> None:
    folder(tmp_path / "out", "keep.txt", {})
    with pytest.raises(FtdiagError, match="is not empty"):
        merge_adapter(tmp_path / "adapter", str(tmp_path / "base"), tmp_path / "out")


def test_merge_passes_both_revisions_to_the_preflight(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from ftdiag.adapters import preflight

    seen: dict[str, object] = {}

    def fake(adapter: object, base: object, **kw: object) -> None:
        seen.update(kw)
        raise FtdiagError("stop here")

    monkeypatch.setattr(preflight, "preflight", fake)
    with pytest.raises(FtdiagError, match="stop here"):
        merge_adapter("org/adapter", "org/base", tmp_path / "out", revision="r1",
                      adapter_revision="r2")
    assert seen == {"revision": "r1", "adapter_revision": "r2"}


def test_a_blocked_static_layer_skips_the_merge_and_says_why(tmp_path: Path) -> None:
    """An adapter folder without weights is A001: nothing is loaded, merged or written."""
    cfg = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}
    adapter_dir = folder(tmp_path / "adapter", "adapter_config.json", cfg)
    report = merge_adapter(adapter_dir, str(base(tmp_path)), tmp_path / "out")
    assert "A001" in report.codes() and report.verdict == "fail"
    assert report.layers_skipped == {"R": "static layer failed", "G": "static layer failed"}
    assert report.layers_run == ["S"] and not (tmp_path / "out").exists()
