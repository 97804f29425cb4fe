"""ftdiag.training.checks on inputs of known content: L009 gradient counts, D002/D003 on batches.

Each case builds its parameters or batches by hand, so the expected counts, norms and rows are
read off the case itself (a 3-4-5 triangle for the norm), not computed by ftdiag.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ftdiag.findings import Finding
from ftdiag.training.checks import (
    GC_HINT,
    GradStats,
    LabelStats,
    batch_checks,
    gradient_check,
    lora_grad_stats,
)

MASK = -100  # the label id the collators use for "not trained"


class Params(nn.Module):
    """A module whose parameters are exactly the (name, grad, trainable) given."""

    def __init__(self, spec: dict[str, tuple[list[float] | None, bool]]) -> None:
        super().__init__()
        for name, (grad, trainable) in spec.items():
            p = nn.Parameter(torch.ones(2), requires_grad=trainable)
            if grad is not None:
                p.grad = torch.tensor(grad)
            self.register_parameter(name, p)


def test_grad_stats_count_lora_tensors_and_sum_the_norm_in_quadrature() -> None:
    """Every kind of parameter before the last LoRA one, so no kind ends the count early."""
    model = Params({"base_weight": ([9.0, 9.0], True), "lora_frozen": ([1.0, 1.0], False),
                    "lora_unused": (None, True), "lora_frozen_too": (None, False),
                    "lora_A": ([3.0, 0.0], True), "lora_zero": ([0.0, 0.0], True),
                    "lora_B": ([0.0, 4.0], True)})
    assert lora_grad_stats(model) == GradStats(lora_tensors=4, nonzero=2, norm=5.0, finite=True,
                                               frozen=2)


def test_a_gradient_below_one_counts_as_non_zero() -> None:
    model = Params({"lora_A": ([0.3, 0.4], True)})
    assert lora_grad_stats(model) == GradStats(1, 1, pytest.approx(0.5), True, 0)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_lora_gradient_is_not_counted_and_marks_the_stats(bad: float) -> None:
    model = Params({"lora_A": ([bad, 0.0], True), "lora_B": ([0.0, 2.0], True)})
    assert lora_grad_stats(model) == GradStats(2, 1, 2.0, False, 0)


def test_no_lora_parameter_at_all_gives_empty_stats() -> None:
    assert lora_grad_stats(Params({"weight": ([1.0, 0.0], True)})) == GradStats(0, 0, 0.0, True, 0)


def _evidence(s: GradStats) -> dict[str, object]:
    return {"lora_tensors": s.lora_tensors, "nonzero": s.nonzero, "grad_norm": s.norm,
            "finite": s.finite, "frozen": s.frozen}


def test_l009_fails_without_trainable_lora_tensors_and_names_the_frozen_ones() -> None:
    stats = GradStats(0, 0, 0.0, True, frozen=6)
    assert gradient_check(stats) == Finding(
        "L009", "fail", "the model has no trainable LoRA parameters (6 LoRA tensors are frozen)",
        "check target_modules against the model's modules, and that the adapter is not frozen "
        "(requires_grad=False)", _evidence(stats))
    assert gradient_check(GradStats(0, 0, 0.0, True)).message \
        == "the model has no trainable LoRA parameters"


def test_l009_fails_on_nan_gradients_even_when_some_are_finite() -> None:
    stats = GradStats(4, 3, 1.5, False)
    assert gradient_check(stats) == Finding(
        "L009", "fail", "LoRA gradients are NaN/Inf after the first step",
        "lower the learning rate, check the data and the dtype", _evidence(stats))


def test_l009_fails_when_no_tensor_got_a_non_zero_gradient() -> None:
    stats = GradStats(8, 0, 0.0, True, frozen=2)
    assert gradient_check(stats) == Finding(
        "L009", "fail", "after step 1 none of the 8 LoRA tensors received a non-zero gradient "
        "(2 LoRA tensors are frozen): training would not change the model", GC_HINT,
        _evidence(stats))
    assert "with gradient checkpointing call model.enable_input_require_grads()" in GC_HINT


def test_l009_passes_on_one_tensor_with_a_gradient_and_is_named_for_what_it_proves() -> None:
    stats = GradStats(8, 1, 0.012345, True)
    assert gradient_check(stats) == Finding(
        "L009", "pass", "1 of 8 LoRA tensors got a gradient after step 1 (norm 0.0123)", "",
        _evidence(stats), check="LoRA gradients flow")


def test_label_stats_count_rows_without_labels_and_rows_that_train_eos() -> None:
    """4 rows of 3 tokens (not square: counting per column would give other numbers)."""
    eos = 2
    stats = LabelStats()
    stats.add(torch.tensor([[5, 6, 2], [5, 2, 0], [7, 8, 9], [2, 2, 2]]),
              torch.tensor([[MASK, 6, 2], [MASK, MASK, MASK], [MASK, 8, 9], [MASK, 2, 2]]), eos)
    assert stats == LabelStats(batches=1, examples=4, no_labels=1, label_tokens=6,
                               eos_in_inputs=3, eos_trained=2)
    stats.add(torch.tensor([2, 4, 2]), torch.tensor([2, 4, 2]), eos)  # one unbatched example
    assert stats == LabelStats(batches=2, examples=5, no_labels=1, label_tokens=9,
                               eos_in_inputs=4, eos_trained=3)


def test_label_stats_count_no_eos_without_an_eos_id_or_inputs() -> None:
    stats = LabelStats()
    stats.add(torch.tensor([[2, 2]]), torch.tensor([[2, 2]]), None)
    stats.add(None, torch.tensor([2, MASK]), 2)
    assert stats == LabelStats(batches=2, examples=2, no_labels=0, label_tokens=3,
                               eos_in_inputs=0, eos_trained=1)


def test_batch_checks_without_an_eos_id_give_d002_alone() -> None:
    stats = LabelStats(batches=3, examples=12, no_labels=0, label_tokens=40)
    assert batch_checks(stats, None) == [Finding(
        "D002", "pass", "every example has trainable label tokens in the first 3 training "
        "batches", "", {"examples": 12})]


def test_batch_checks_fail_d002_when_every_label_is_masked() -> None:
    stats = LabelStats(batches=2, examples=8, no_labels=8, label_tokens=0)
    assert batch_checks(stats, None) == [Finding(
        "D002", "fail", "all 8 examples have no trainable label token in the first 2 training "
        "batches", "every label is -100: check the collator / completion mask and max_length",
        {"examples": 8, "no_labels": 8, "label_tokens": 0})]


def test_batch_checks_warn_d002_with_the_some_hint_when_part_is_masked() -> None:
    stats = LabelStats(batches=1, examples=4, no_labels=1, label_tokens=9)
    (d002,) = batch_checks(stats, None)
    assert (d002.status, d002.message) == (
        "warn", "1 of 4 examples have no trainable label token in the first 1 training batches")
    assert d002.hint == "those examples train nothing: check truncation and the completion mask"


def test_d003_says_eos_is_masked_when_the_inputs_hold_it() -> None:
    stats = LabelStats(batches=1, examples=4, no_labels=0, label_tokens=9, eos_in_inputs=4,
                       eos_trained=0)
    d003 = batch_checks(stats, 2, eos_source="generation_config.json")[1]
    assert d003 == Finding(
        "D003", "warn", "EOS (id 2, from generation_config.json) is not among the trained label "
        "tokens", "EOS is in the inputs but masked: a collator that masks pad labels masks EOS "
        "too when pad_token == eos_token; set a distinct pad token",
        {"eos_id": 2, "examples": 4, "eos_in_inputs": 4, "eos_source": "generation_config.json"})


def test_d003_says_no_example_holds_eos_when_the_inputs_lack_it() -> None:
    stats = LabelStats(batches=1, examples=4, no_labels=0, label_tokens=9)
    d003 = batch_checks(stats, 2)[1]
    assert (d003.status, d003.message) == ("warn", "EOS (id 2) is not among the trained label "
                                                    "tokens")
    assert d003.hint == ("no example the model saw contains EOS: append tokenizer.eos_token to "
                         "every text, or raise max_length if truncation cuts it off")


def test_d003_passes_when_one_example_trains_eos() -> None:
    stats = LabelStats(batches=1, examples=4, no_labels=0, label_tokens=9, eos_in_inputs=1,
                       eos_trained=1)
    assert batch_checks(stats, 2)[1] == Finding(
        "D003", "pass", "EOS trained in 1 of 4 examples", "",
        {"eos_id": 2, "eos_in_inputs": 1, "eos_source": "tokenizer"})
