"""Gemma3 mixes sliding-window and global attention: ftdiag's fast path gives its reference path's
logits there too, a healthy adapter gets no R004, and ab-test's texts equal HF generate.

The gap it once had: the shared template prefix ran once and each row's tail followed its left
padding, so pads sat between prefix and tail; a sliding window counts cache slots, and those pads
hid real tokens from the shorter rows (max |Δlogit| 0.08-1.8 on prompts longer than the window).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from _arch import TITLES, hf_texts

from ftdiag import check_adapter
from ftdiag.abtest.local import ABConfig, run_ab_test
from ftdiag.adapters.details import details_of
from ftdiag.generation.decode import next_logits, prefix_is_exact, reserved_cache
from ftdiag.model.live import BASE, adapters_off
from ftdiag.model.load import load_adapter, load_base
from ftdiag.prompts.records import Record
from ftdiag.prompts.template import DEFAULT_TEMPLATE
from ftdiag.testing import tiny

WINDOW = 16  # shorter than every prompt: the window clips
NEW = 8


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(base, healthy adapter): a tiny Gemma3ForCausalLM, one sliding and one global layer, and
    an adapter on all its linear layers after 12 optimizer steps."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    out = tmp_path_factory.mktemp("gemma3")
    tok = tiny.build_tokenizer()
    torch.manual_seed(0)
    cfg = Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=WINDOW,
        layer_types=["sliding_attention", "full_attention"], max_position_embeddings=512,
        initializer_range=0.2, pad_token_id=0, bos_token_id=2, eos_token_id=3)
    model = Gemma3ForCausalLM(cfg)
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = 0, 3
    model.save_pretrained(out / "base")
    tok.save_pretrained(out / "base")
    adapter = tiny.train_toy_adapter(out / "base", out / "adapter", steps=12)
    return out / "base", adapter


def _prompts() -> list[str]:
    return [DEFAULT_TEMPLATE.replace("{title}", t) for t in TITLES]


def _peft(gemma3: tuple[Path, Path]) -> tuple[Any, Any]:
    loaded = load_base(gemma3[0])
    return load_adapter(loaded, gemma3[1]), loaded.tokenizer


def test_fast_path_equals_reference_on_prompts_of_different_lengths(
        gemma3: tuple[Path, Path]) -> None:
    model, tok = _peft(gemma3)
    rows = [tok(p)["input_ids"] for p in _prompts()]
    assert len({len(r) for r in rows}) == len(rows) and min(map(len, rows)) > WINDOW
    n = len(rows)
    fast = next_logits(model, rows * 2, tok.pad_token_id, [BASE] * n + ["default"] * n)
    with torch.inference_mode():
        with adapters_off(model):
            base = [model(input_ids=torch.tensor([r])).logits[0, -1] for r in rows]
        adapter = [model(input_ids=torch.tensor([r])).logits[0, -1] for r in rows]
    torch.testing.assert_close(fast, torch.stack(base + adapter), rtol=0, atol=1e-4)
    assert not torch.allclose(fast[:n], fast[n:])  # the adapter rows really are the adapter


def test_prefix_is_shared_only_where_no_window_can_see_the_pads(
        gemma3: tuple[Path, Path], tiny_llama: Path) -> None:
    gemma = load_base(gemma3[0]).model
    assert prefix_is_exact(reserved_cache(gemma, WINDOW), WINDOW)
    assert not prefix_is_exact(reserved_cache(gemma, WINDOW + 1), WINDOW + 1)
    assert prefix_is_exact(reserved_cache(load_base(tiny_llama).model, 4096), 4096)


def test_healthy_adapter_gets_no_r004_and_the_fast_path_is_used(
        gemma3: tuple[Path, Path]) -> None:
    report = check_adapter(gemma3[1], gemma3[0])
    assert report.verdict == "pass", [f.message for f in report.findings]
    r004 = next(c for c in report.checks if c.code == "R004")
    assert r004.status == "pass" and r004.evidence["fast_path"] is True
    fast = details_of(report).runtime.fast_path
    assert fast is not None and fast.used and fast.gap is not None and fast.gap < 1e-4


def test_ab_test_texts_equal_hf_generate_on_a_padded_batch(gemma3: tuple[Path, Path]) -> None:
    res = run_ab_test(ABConfig(gemma3[1], str(gemma3[0]), max_new_tokens=NEW),
                      [Record(t) for t in TITLES])
    assert res.summary.plan.mixed_batch and res.summary.plan.fast_path.used
    want = hf_texts(gemma3[0], gemma3[1], [r.prompt for r in res.rows], NEW)
    assert [r.outputs["base"] for r in res.rows] == want["base"]
    assert [r.outputs["adapter"] for r in res.rows] == want["adapter"]


def test_the_old_gap_put_back_is_caught_and_the_unshared_prefix_used(
        gemma3: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import ftdiag.generation.decode as decode

    monkeypatch.setattr(decode, "prefix_is_exact", lambda cache, slots: True)
    report = check_adapter(gemma3[1], gemma3[0])
    assert report.verdict == "pass", [f.message for f in report.findings]
    fast = details_of(report).runtime.fast_path
    assert fast is not None and fast.used and fast.mixed and not fast.share_prefix
    assert "shared prefix" in fast.reason  # the gap that made it drop the shared prefix
    res = run_ab_test(ABConfig(gemma3[1], str(gemma3[0]), max_new_tokens=NEW),
                      [Record(t) for t in TITLES])
    want = hf_texts(gemma3[0], gemma3[1], [r.prompt for r in res.rows], NEW)
    assert [r.outputs["adapter"] for r in res.rows] == want["adapter"]


def test_a_fast_path_that_disagrees_is_a_note_not_r004(gemma3: tuple[Path, Path],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """ftdiag's fast path off by 0.05 everywhere: it says so, runs the reference path, and
    blames nobody (R004 is for the user's objects)."""
    import ftdiag.generation.decode as decode

    real = decode.next_logits
    monkeypatch.setattr(decode, "next_logits", lambda *a, **k: real(*a, **k) + 0.05)
    report = check_adapter(gemma3[1], gemma3[0])
    assert report.verdict == "pass", [f.message for f in report.findings]
    fast = details_of(report).runtime.fast_path
    assert fast is not None and not fast.used
    assert fast.gap is not None and fast.tolerance is not None and fast.gap > fast.tolerance
    r004 = next(c for c in report.checks if c.code == "R004")
    assert r004.status == "pass" and "reference path" in r004.message

    res = run_ab_test(ABConfig(gemma3[1], str(gemma3[0]), max_new_tokens=NEW),
                      [Record(t) for t in TITLES])
    assert not {c for c in res.report.codes() if c.startswith("R")}  # the user's objects are fine
    assert not res.summary.plan.fast_path.used and not res.summary.plan.mixed_batch
    assert any("reference path" in w for w in res.summary.warnings)
    want = hf_texts(gemma3[0], gemma3[1], [r.prompt for r in res.rows], NEW)
    assert [r.outputs["base"] for r in res.rows] == want["base"]
    assert [r.outputs["adapter"] for r in res.rows] == want["adapter"]
