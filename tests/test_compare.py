"""Text and logit comparisons: word diff, ROUGE-L, token-F1, divergence, tolerance, NLL."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ftdiag.generation.metrics import (
    first_divergence,
    logit_gap,
    reference_nll,
    rouge_l,
    token_f1,
    word_diff,
)


def test_word_diff_rebuilds_both_texts() -> None:
    a, b = "a durable steel bottle, 750 ml", "a light steel bottle for hiking, 750 ml"
    ops = word_diff(a, b)
    assert "".join(o.text for o in ops if o.op != "insert") == a
    assert "".join(o.text for o in ops if o.op != "delete") == b
    assert any(o.op == "delete" and "durable" in o.text for o in ops)
    assert any(o.op == "insert" and "hiking" in o.text for o in ops)


def test_word_diff_of_identical_texts_is_one_equal_run() -> None:
    assert [o.op for o in word_diff("same text here", "same text here")] == ["equal"]


def test_rouge_l_values() -> None:
    assert rouge_l("the cat sat", "the cat sat") == pytest.approx(1.0)
    assert rouge_l("dog", "the cat sat") == 0.0
    # LCS("the cat sat on mat", "the cat on the mat") = the cat on mat = 4
    assert rouge_l("the cat sat on mat", "the cat on the mat") == pytest.approx(0.8)
    assert rouge_l("", "x") == 0.0


def test_rouge_l_tokenizes_like_the_reference_implementation() -> None:
    # rouge-score keeps only [a-z0-9] runs: "steel_bottle" is two words, "750ml" one.
    # LCS(steel bottle 750ml, steel bottle 750 ml) = 2: P = 2/3, R = 2/4, F = 4/7
    assert rouge_l("Steel_bottle 750ml", "steel bottle 750 ml") == pytest.approx(4 / 7)


def test_token_f1_counts_common_words() -> None:
    # common: steel, bottle -> p = 2/3, r = 2/4
    assert token_f1("Steel bottle cold", "a steel bottle, 750") == pytest.approx(4 / 7)
    assert token_f1("x", "y") == 0.0


@pytest.mark.parametrize(("a", "b", "want"), [
    ([1, 2, 3], [1, 2, 3], None), ([1, 2, 3], [1, 5, 3], 1), ([1, 2], [1, 2, 3], 2),
    ([], [4], 0)])
def test_first_divergence(a: list[int], b: list[int], want: int | None) -> None:
    assert first_divergence(a, b) == want


def test_logit_gap_tolerance_scales_with_logits() -> None:
    ref = [torch.tensor([[10.0, -10.0]])]
    assert logit_gap(ref, [ref[0] + 5e-4]).within
    gap = logit_gap(ref, [ref[0] + 0.1])
    assert not gap.within and gap.max_abs == pytest.approx(0.1, rel=1e-4)


def test_reference_nll_is_lower_under_the_trained_adapter(tiny_llama: Path,
                                                         trained_adapter: Path) -> None:
    from ftdiag.generation.arms import BASE
    from ftdiag.model.load import load_adapter, load_base
    from ftdiag.testing.tiny import TOY_TEXTS

    loaded = load_base(tiny_llama)
    model = load_adapter(loaded, trained_adapter)
    prompt, ref = TOY_TEXTS[0].split("[ASSISTANT]\n")
    prompt += "[ASSISTANT]\n"
    nll = reference_nll(model, loaded.tokenizer, [prompt], [ref], [BASE, "default"], max_len=512)
    assert len(nll) == 2
    assert nll[1] < nll[0]  # trained on this very text
    with model.disable_adapter():
        alone = reference_nll(model, loaded.tokenizer, [prompt], [ref], None, max_len=512)
    assert alone[0] == pytest.approx(nll[0], abs=1e-4)  # mixed-batch base row = base model


def test_reference_nll_batched_equals_each_row_alone(tiny_llama: Path,
                                                     trained_adapter: Path) -> None:
    """Left padding + last-positions-only logits give each row's own full-logits NLL."""
    from ftdiag.generation.arms import BASE
    from ftdiag.model.load import load_adapter, load_base

    loaded = load_base(tiny_llama)
    model, tok = load_adapter(loaded, trained_adapter), loaded.tokenizer
    prompts = ["Title: pan\n", "Title: a much longer title about a steel bottle\n", "T\n"]
    refs = ["A pan.", "A bottle that keeps drinks cold all day long.", "x"]
    got = reference_nll(model, tok, prompts, refs, [BASE, "default"], max_len=512,
                        batch_size=4)
    want = []
    for prompt, ref in zip(prompts, refs, strict=True):
        p_ids = tok(prompt)["input_ids"]
        ids = torch.tensor([p_ids + tok(ref, add_special_tokens=False)["input_ids"]])
        for name in (BASE, "default"):
            with torch.inference_mode():
                logits = model(input_ids=ids, adapter_names=[name]).logits[0]
            want.append(float(torch.nn.functional.cross_entropy(
                logits[len(p_ids) - 1:-1], ids[0, len(p_ids):])))
    assert got == pytest.approx(want, abs=1e-4)
    assert got[0] != pytest.approx(got[1], abs=1e-3)  # base and adapter rows really differ
