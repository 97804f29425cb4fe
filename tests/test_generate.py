"""Batched generation over arms: one weight copy, mixed batch = separate passes = one at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from ftdiag.generation.arms import Arm, GenSettings, generate_arms, generate_one, generation_config
from ftdiag.model.live import BASE, active_lora_layers, adapters_off, can_mix, lora_layers
from ftdiag.model.load import load_adapter, load_base
from ftdiag.prompts.template import DEFAULT_TEMPLATE

TITLES = ["Steel bottle", "A very long title about a cotton shirt for men and women", "Pan"]


@pytest.fixture
def pair(tiny_llama: Path, trained_adapter: Path) -> tuple[Any, Any]:
    loaded = load_base(tiny_llama)
    return load_adapter(loaded, trained_adapter), loaded.tokenizer


def prompts() -> list[str]:
    return [DEFAULT_TEMPLATE.replace("{title}", t) for t in TITLES]


def test_mixed_batch_runs_both_arms_in_one_call(pair: tuple[Any, Any]) -> None:
    model, tok = pair
    arms = [Arm("base", model, BASE), Arm("adapter", model, "default")]
    outs, plan, gen = generate_arms(tok, prompts(), arms, GenSettings(max_new_tokens=8))
    assert plan.mixed_batch and plan.calls == 1 and plan.rows == 6
    assert gen["effective"]["do_sample"] is False and gen["effective"]["num_beams"] == 1
    assert [o.ids for o in outs["base"]] != [o.ids for o in outs["adapter"]]


def test_batched_equals_one_prompt_at_a_time(pair: tuple[Any, Any]) -> None:
    model, tok = pair
    arms = [Arm("base", model, BASE), Arm("adapter", model, "default")]
    settings = GenSettings(max_new_tokens=8, batch_size=3)
    outs, _, _ = generate_arms(tok, prompts(), arms, settings)
    for arm in arms:
        for i, p in enumerate(prompts()):
            assert generate_one(tok, p, arm, settings).ids == outs[arm.name][i].ids


def test_mixed_base_rows_equal_a_separately_loaded_base(pair: tuple[Any, Any],
                                                        tiny_llama: Path) -> None:
    model, tok = pair
    clean = load_base(tiny_llama).model
    settings = GenSettings(max_new_tokens=8)
    mixed, _, _ = generate_arms(tok, prompts(), [Arm("base", model, BASE),
                                                 Arm("adapter", model, "default")], settings)
    alone, plan, _ = generate_arms(tok, prompts(), [Arm("base", clean, None)], settings)
    assert not plan.mixed_batch
    assert [o.ids for o in mixed["base"]] == [o.ids for o in alone["base"]]


def test_greedy_overrides_sampling_defaults_of_the_model(pair: tuple[Any, Any]) -> None:
    model, tok = pair
    model.generation_config.do_sample = True
    model.generation_config.temperature = 0.7
    cfg, overridden = generation_config(model, tok, GenSettings())
    assert cfg.do_sample is False and cfg.num_beams == 1
    assert overridden["do_sample"] is True and overridden["temperature"] == 0.7


def test_adapters_off_disables_every_layer_and_restores(pair: tuple[Any, Any]) -> None:
    model, _ = pair
    n = len(lora_layers(model))
    assert n and active_lora_layers(model) == n
    with adapters_off(model):
        assert active_lora_layers(model) == 0
    assert active_lora_layers(model) == n


def test_merged_layers_cannot_mix_and_fall_back_to_separate_passes(
        pair: tuple[Any, Any]) -> None:
    model, tok = pair
    reference, _, _ = generate_arms(tok, prompts(), [Arm("adapter", model, "default")],
                                    GenSettings(max_new_tokens=6))
    model.merge_adapter()
    assert not can_mix(model)
    arms = [Arm("base", model, BASE), Arm("adapter", model, "default")]
    outs, plan, _ = generate_arms(tok, prompts(), arms, GenSettings(max_new_tokens=6))
    assert not plan.mixed_batch and plan.calls == 2
    assert [o.ids for o in outs["adapter"]] == [o.ids for o in reference["adapter"]]


def test_eos_cuts_the_output_and_clears_hit_max(pair: tuple[Any, Any]) -> None:
    from ftdiag.generation.arms import _split

    _, tok = pair
    cfg, _ = generation_config(pair[0], tok, GenSettings(max_new_tokens=4))
    eos = tok.eos_token_id
    out = _split(torch.tensor([5, 6, eos, 0]), cfg, tok)
    assert out.ids == [5, 6] and not out.hit_max
    assert _split(torch.tensor([5, 6, 7, 8]), cfg, tok).hit_max
