"""ftdiag.generation.decode's greedy loop = HF generate: left padding, mixed adapters, early EOS."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from ftdiag.generation.arms import BASE, Arm, GenSettings, auto_batch, generate_arms
from ftdiag.generation.decode import common_prefix, greedy, kv_bytes_per_token, row_adapters
from ftdiag.model.load import load_adapter, load_base
from ftdiag.prompts.template import DEFAULT_TEMPLATE

TITLES = ["Steel bottle", "A very long title about a cotton shirt for men and women", "Pan",
          "USB cable 2m"]
N = 12


def _prompts() -> list[str]:
    return [DEFAULT_TEMPLATE.replace("{title}", t) for t in TITLES]


def _hf(model: Any, tok: Any, prompts: list[str], eos: list[int],
        names: list[str] | None) -> list[list[int]]:
    """model.generate on left-padded rows, cut after the first EOS (decode keeps that token)."""
    enc = tok(prompts, return_tensors="pt", padding=True)
    extra = {"adapter_names": names} if names else {}
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=N, do_sample=False, num_beams=1,
                             pad_token_id=tok.pad_token_id, eos_token_id=eos, **extra)
    rows = []
    for r in out[:, enc["input_ids"].shape[1]:].tolist():
        cut = next((i for i, t in enumerate(r) if t in eos), None)
        rows.append(r if cut is None else r[:cut + 1])
    return rows


def _frequent_tokens(rows: list[list[int]], k: int) -> list[int]:
    """Tokens the model emits mid-way: used as EOS so rows stop at different steps."""
    return [t for t, _ in Counter(t for r in rows for t in r[2:8]).most_common(k)]


@pytest.fixture
def pair(tiny_llama: Path, trained_adapter: Path) -> tuple[Any, Any]:
    loaded = load_base(tiny_llama)
    return load_adapter(loaded, trained_adapter).eval(), loaded.tokenizer


@pytest.mark.parametrize("share_prefix", [True, False])
def test_mixed_batch_with_early_eos_equals_hf_generate(pair: tuple[Any, Any],
                                                       share_prefix: bool) -> None:
    model, tok = pair
    prompts = _prompts() * 2
    names = [BASE] * len(TITLES) + ["default"] * len(TITLES)
    eos = _frequent_tokens(_hf(model, tok, prompts, [tok.eos_token_id], names), 2)
    want = _hf(model, tok, prompts, eos, names)
    assert len({len(r) for r in want}) > 1  # rows really leave the batch at different steps
    rows = [tok(p)["input_ids"] for p in prompts]
    got = greedy(model, rows, max_new_tokens=N, eos=set(eos), pad_id=tok.pad_token_id,
                 adapter_names=names, share_prefix=share_prefix)
    assert got == want


def test_plain_gpt2_with_position_embeddings_equals_hf_generate(tiny_gpt2: Path) -> None:
    loaded = load_base(tiny_gpt2)
    model, tok = loaded.model.eval(), loaded.tokenizer
    prompts = _prompts()
    eos = _frequent_tokens(_hf(model, tok, prompts, [tok.eos_token_id], None), 1)
    want = _hf(model, tok, prompts, eos, None)
    got = greedy(model, [tok(p)["input_ids"] for p in prompts], max_new_tokens=N, eos=set(eos),
                 pad_id=tok.pad_token_id)
    assert got == want


def test_generate_arms_matches_hf_generate_per_arm(pair: tuple[Any, Any]) -> None:
    model, tok = pair
    arms = [Arm("base", model, BASE), Arm("adapter", model, "default")]
    outs, plan, _ = generate_arms(tok, _prompts(), arms, GenSettings(max_new_tokens=N))
    assert plan.calls == 1  # auto batch: four short titles fit one batch
    names = [BASE] * len(TITLES) + ["default"] * len(TITLES)
    want = _hf(model, tok, _prompts() * 2, [tok.eos_token_id], names)
    got = [o.ids for o in outs["base"] + outs["adapter"]]
    assert got == [r[:-1] if r and r[-1] == tok.eos_token_id else r for r in want]


def test_common_prefix_leaves_one_token_per_row() -> None:
    assert common_prefix([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert common_prefix([[1, 2, 3], [1, 2, 3]]) == 2
    assert common_prefix([[7], [7, 8]]) == 0
    assert common_prefix([[1, 2], [3, 4]]) == 0


def test_auto_batch_keeps_the_kv_cache_under_the_budget(pair: tuple[Any, Any],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import ftdiag.generation.arms as gen

    model, tok = pair
    prompts = _prompts() * 8
    longest = max(len(tok(p)["input_ids"]) for p in prompts)
    assert auto_batch(model, longest, len(prompts), 2, 16) == len(prompts)  # tiny: one batch
    per_title = kv_bytes_per_token(model) * (longest + 16) * 2
    monkeypatch.setattr(gen, "KV_FLOOR", per_title * 10)
    monkeypatch.setattr(gen, "KV_SHARE", 10**12)  # the floor decides
    bs = auto_batch(model, longest, len(prompts), 2, 16)
    assert bs * per_title <= gen.KV_FLOOR and -(-len(prompts) // bs) == 4  # 32 titles: 4 x 8


def test_row_adapters_give_peft_logits_and_restore_peft(pair: tuple[Any, Any]) -> None:
    from peft.tuners.lora.layer import Linear

    model, tok = pair
    enc = tok(_prompts() * 2, return_tensors="pt", padding=True)
    layers = [m for m in model.modules() if type(m) is Linear]
    for names in ([BASE] * 4 + ["default"] * 4, [BASE, "default"] * 4):  # runs; interleaved
        with torch.inference_mode():
            want = model(**enc, adapter_names=names).logits
            want_plain = model(**enc).logits
            with row_adapters(model) as rows:
                assert not rows.native and all("forward" in vars(m) for m in layers)
                rows.names = names
                got = model(**enc, **rows.kwargs()).logits
                rows.names = None
                plain = model(**enc).logits  # no names: the active adapter on every row
        assert torch.equal(got, want)
        assert torch.equal(plain, want_plain)
        assert not any("forward" in vars(m) for m in layers)
        if names[4] == "default":  # row 0 and row 4: the same prompt, base vs adapter
            assert not torch.equal(want[0], want[4])


def test_modules_to_save_keeps_peft_path_and_equals_hf_generate(tiny_llama: Path) -> None:
    from peft import LoraConfig, get_peft_model

    loaded = load_base(tiny_llama)
    tok = loaded.tokenizer
    model = get_peft_model(loaded.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                    modules_to_save=["lm_head"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    with row_adapters(model) as rows:
        assert rows.native  # PEFT's own hooks: its wrapper must see the names too
    prompts = _prompts() * 2
    names = [BASE] * len(TITLES) + ["default"] * len(TITLES)
    want = _hf(model, tok, prompts, [tok.eos_token_id], names)
    got = greedy(model, [tok(p)["input_ids"] for p in prompts], max_new_tokens=N,
                 eos={tok.eos_token_id}, pad_id=tok.pad_token_id, adapter_names=names)
    assert got == want and got[0] != got[len(TITLES)]


def test_unknown_adapter_name_is_refused(pair: tuple[Any, Any]) -> None:
    model, tok = pair
    with pytest.raises(ValueError, match="non-existing adapter"):
        greedy(model, [tok("x")["input_ids"]], max_new_tokens=2, eos=set(), pad_id=0,
               adapter_names=["typo"])


@pytest.mark.parametrize("capacity", [1, 64])
def test_reserved_cache_matches_dynamic_cache(pair: tuple[Any, Any], capacity: int) -> None:
    """Growing past the reserve (capacity 1) or not, and after rows leave: HF's cache's numbers."""
    from transformers import DynamicCache

    from ftdiag.generation.decode import reserved_cache

    model, tok = pair
    base = model.get_base_model()
    ids = tok(_prompts(), return_tensors="pt", padding=True)["input_ids"]
    caches = [DynamicCache(config=base.config), reserved_cache(base, capacity)]
    logits = []
    with torch.inference_mode():
        for cache in caches:
            base(input_ids=ids, past_key_values=cache, use_cache=True)
            cache.batch_select_indices(torch.tensor([0, 2, 3]))
            steps = [base(input_ids=ids[[0, 2, 3], -1:], past_key_values=cache,
                          use_cache=True).logits for _ in range(3)]
            logits.append(torch.cat(steps, 1))
    assert caches[1].get_seq_length() == caches[0].get_seq_length() == ids.shape[1] + 3
    torch.testing.assert_close(logits[1], logits[0], rtol=0, atol=1e-5)


def test_next_logits_equal_a_plain_forward_per_prompt(pair: tuple[Any, Any]) -> None:
    """The probes' prompt pass (shared prefix once, left padding) = each prompt alone."""
    from ftdiag.generation.decode import next_logits

    model, tok = pair
    rows = [tok(p)["input_ids"] for p in _prompts()]
    assert common_prefix(rows) > 0
    got = next_logits(model, rows, tok.pad_token_id)
    with torch.inference_mode():
        want = torch.stack([model(input_ids=torch.tensor([r])).logits[0, -1] for r in rows])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


@pytest.mark.parametrize(("fixture", "targets"), [("tiny_gpt2", ["c_attn", "c_proj"]),
                                                  ("tiny_qwen2", ["q_proj", "v_proj"])])
def test_row_adapters_equal_hf_generate_on_other_architectures(
        request: pytest.FixtureRequest, fixture: str, targets: list[str]) -> None:
    """GPT-2 (Conv1D base layers, fan_in_fan_out) and Qwen2 (tied embeddings): patched = PEFT."""
    from peft import LoraConfig, get_peft_model

    loaded = load_base(request.getfixturevalue(fixture))
    tok = loaded.tokenizer
    model = get_peft_model(loaded.model, LoraConfig(r=4, target_modules=targets,
                                                    fan_in_fan_out=fixture == "tiny_gpt2"))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.eval()
    with row_adapters(model) as rows:
        assert not rows.native
    prompts = _prompts() * 2
    names = [BASE] * len(TITLES) + ["default"] * len(TITLES)
    want = _hf(model, tok, prompts, [tok.eos_token_id], names)
    got = greedy(model, [tok(p)["input_ids"] for p in prompts], max_new_tokens=N,
                 eos={tok.eos_token_id}, pad_id=tok.pad_token_id, adapter_names=names)
    assert got == want and got[:len(TITLES)] != got[len(TITLES):]
