"""The architecture sweep: each decoder-only family of the installed transformers, built tiny from
its own config class, through a user's story with ftdiag (tests/test_arch_sweep.py).

The families come from transformers' auto mappings, not from a hand-picked list: every model type
of the causal-LM mapping, less those another mapping claims (the decoder half of an encoder-decoder
or speech model, an encoder family used as a decoder, a model that needs image or audio inputs).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SIZE: dict[str, Any] = {  # generic size fields; a config sets those it has
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
    "max_position_embeddings": 512, "sliding_window": 24, "attention_chunk_size": 24,
    "num_experts": 4, "num_local_experts": 4, "n_routed_experts": 4, "num_experts_per_tok": 2,
    "moe_intermediate_size": 32, "shared_expert_intermediate_size": 32,
    "linear_num_key_heads": 2, "linear_num_value_heads": 2, "linear_key_head_dim": 8,
    "linear_value_head_dim": 8, "rotary_dim": 8, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8,
    "v_head_dim": 8, "kv_lora_rank": 16, "q_lora_rank": 16,  # latent attention (MLA)
    "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3,
    "initializer_range": 0.2,  # random weights whose greedy tokens vary
}
WIDER = {**SIZE, "hidden_size": 64, "num_key_value_heads": 4, "head_dim": 16,  # divisibility
         "rotary_dim": 16, "qk_rope_head_dim": 16}
MAX_PARAMS = 4_000_000
MAX_LAYERS = 24
STEPS = 4  # optimizer steps of the healthy adapter
NEW_TOKENS = 6
TITLES = ["Pan", "Steel bottle 750 ml", "A long title about an organic cotton shirt for men"]
OTHER_MAPPINGS = {
    "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES": "encoder-decoder: its causal LM is the "
                                                    "decoder half",
    "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES": "speech encoder-decoder",
    "MODEL_FOR_MASKED_LM_MAPPING_NAMES": "encoder (masked-LM) family, a decoder only with "
                                         "is_decoder=True",
    "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES": "multimodal: needs image inputs",
    "MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES": "multimodal: needs image or audio inputs",
    "MODEL_FOR_TEXT_TO_WAVEFORM_MAPPING_NAMES": "text-to-audio model",
}


class Unbuildable(Exception):
    """This family cannot be built and run tiny here (the reason is the message)."""


@dataclass
class FamilyResult:
    """One family's sweep: skipped (why), or the problems ftdiag showed on it (none: passed)."""

    family: str
    skipped: str | None = None
    problems: list[str] = field(default_factory=list)
    fast_path: str = ""  # how ab-test generated: which parts of the fast path it used
    seconds: float = 0.0


def families() -> tuple[list[str], dict[str, str]]:
    """(decoder-only model types to sweep, model type -> why it is not one)."""
    from transformers.models.auto import modeling_auto

    causal = list(modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    skipped: dict[str, str] = {}
    for mapping, why in OTHER_MAPPINGS.items():
        for model_type in getattr(modeling_auto, mapping, {}):
            if model_type in causal:
                skipped.setdefault(model_type, why)
    return [m for m in causal if m not in skipped], skipped


def tiny_config(model_type: str, vocab: int) -> Any:
    """The config of the first of `_rungs` that validates, stays under MAX_PARAMS and runs a
    left-padded batch (forward and HF generate); Unbuildable with the smallest one's error."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    cls = CONFIG_MAPPING[model_type]
    try:
        default = cls()
    except Exception as exc:
        raise Unbuildable(f"its config class rejects its own defaults: {_line(exc)}") from exc
    known = set(vars(default)) | set(getattr(default, "attribute_map", {}) or {})
    errors: list[str] = []
    for rung in _rungs(default):
        try:
            cfg = cls(**{k: v for k, v in {**rung, "vocab_size": vocab}.items() if k in known})
            with torch.device("meta"):
                size = sum(p.numel() for p in AutoModelForCausalLM.from_config(cfg).parameters())
            if size > MAX_PARAMS:
                errors.append(f"{size / 1e6:.0f}M parameters at the smallest sizes it takes")
                continue
            _runs_padded(AutoModelForCausalLM.from_config(cfg).eval())
            return cfg
        except ImportError as exc:
            raise Unbuildable(f"needs a package not installed here: {_line(exc)}") from exc
        except Exception as exc:  # transformers' own errors, kept as the reason
            errors.append(f"{type(exc).__name__}: {_line(exc)}")
    depth = _layers(default)
    deep = f"; its own depth ({depth} layers) is over {MAX_LAYERS}" if depth > MAX_LAYERS else ""
    raise Unbuildable(f"no tiny config runs: {errors[0]}{deep}")


def _layers(config: Any) -> int:
    try:
        return int(getattr(config, "num_hidden_layers", 0) or 0)
    except Exception:  # a per-layer field of a heterogeneous config
        return 0


def _rungs(default: Any) -> list[dict[str, Any]]:
    """Sizes to try, smallest first: two layers, wider heads, then as few layers as hold every
    layer type of the config's own pattern (a hybrid's attention layer may come fourth or
    sixth), then the config's own depth (up to MAX_LAYERS: CPU time)."""
    rungs = [SIZE, WIDER]
    try:
        types = list(getattr(default, "layer_types", None) or [])
    except Exception:  # a per-layer field of a heterogeneous config
        types = []
    depth = next((n for n in range(1, len(types) + 1) if set(types[:n]) == set(types)), 0)
    if 2 < depth <= MAX_LAYERS:
        rungs += [{**WIDER, "num_hidden_layers": depth},
                  {**WIDER, "num_hidden_layers": depth, "layer_types": types[:depth]}]
    if _layers(default) <= MAX_LAYERS:
        rungs.append({k: v for k, v in WIDER.items() if k != "num_hidden_layers"})
    return rungs


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text and text[0].startswith("Class validation") else
            text[0] if text else type(exc).__name__)[:160]


def _runs_padded(model: Any) -> None:
    """HF's own forward and generate on a left-padded batch (the reference must exist)."""
    import torch

    ids = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])
    mask = (ids != 0).long()
    with torch.inference_mode():
        model(input_ids=ids, attention_mask=mask)
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=2, do_sample=False,
                       pad_token_id=0)


def run_family(model_type: str) -> FamilyResult:
    """The story of one family in a fresh folder; never raises (problems are the result)."""
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    result = FamilyResult(model_type)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FTDIAG_CACHE"] = str(Path(tmp) / "cache")
        try:
            _story(model_type, Path(tmp), result)
        except Unbuildable as exc:
            result.skipped = str(exc)
        except Exception:  # ftdiag's crash on this family is its problem
            result.problems.append("crashed:\n" + traceback.format_exc(limit=-6))
    result.seconds = time.perf_counter() - start
    return result


def _story(model_type: str, tmp: Path, result: FamilyResult) -> None:
    """Healthy adapter: check-adapter passes; untrained twin: A003; ab-test = HF generate."""
    from ftdiag import check_adapter
    from ftdiag.abtest.local import ABConfig, run_ab_test
    from ftdiag.prompts.records import Record

    base = _save_base(model_type, tmp / "base")
    try:
        adapter, twin = train_adapters(base, tmp)
    except Exception as exc:
        raise Unbuildable(f"PEFT LoRA (all-linear) cannot train it: {_line(exc)}") from exc
    report = check_adapter(adapter, base)
    if "R006" in report.codes() and (lost := peft_missing_keys(base, adapter)):
        raise Unbuildable(f"PEFT does not load back the adapter it saved ({len(lost)} keys "
                          f"missing, e.g. {lost[0]}): R006 rightly fails")
    bad = [f"{f.code} {f.status}: {f.message}" for f in report.findings]
    if bad or "R" in report.layers_skipped:
        result.problems.append(f"check-adapter on the healthy adapter: {bad} "
                               f"{report.layers_skipped}")
    if "A003" not in check_adapter(twin, base, static_only=True).codes():
        result.problems.append("check-adapter missed A003 on the untrained twin")
    ab = run_ab_test(ABConfig(adapter, str(base), max_new_tokens=NEW_TOKENS),
                     [Record(t) for t in TITLES])
    if not ab.rows:
        result.problems.append(f"ab-test generated nothing: {ab.report.layers_skipped}")
        return
    result.fast_path = _how(ab.summary.plan.fast_path, base, [r.prompt for r in ab.rows])
    want = hf_texts(base, adapter, [r.prompt for r in ab.rows])
    for arm in ("base", "adapter"):
        got = [r.outputs[arm] for r in ab.rows]
        if got != want[arm]:
            result.problems.append(f"ab-test {arm} texts {got} != HF generate {want[arm]} "
                                   f"(fast path: {ab.summary.plan.fast_path})")


def _how(fast: Any, base: Path, prompts: list[str]) -> str:
    """Which fast path ab-test took: 'mixed batch, shared prefix', ... or the reference path."""
    from types import SimpleNamespace

    from transformers import AutoConfig, AutoTokenizer

    from ftdiag.generation.decode import prefix_is_exact, reserved_cache

    if not fast.used:
        return "reference path"
    tok = AutoTokenizer.from_pretrained(str(base))
    slots = max(len(tok(p)["input_ids"]) for p in prompts) + NEW_TOKENS  # as ab-test decodes
    cache = reserved_cache(SimpleNamespace(config=AutoConfig.from_pretrained(str(base))), 1)
    share = fast.share_prefix and prefix_is_exact(cache, slots)
    return ("mixed batch" if fast.mixed else "batch per arm") + \
        (", shared prefix" if share else ", no shared prefix")


def _save_base(model_type: str, out: Path) -> Path:
    """A tiny random model of this family and the tiny tokenizer, saved as an HF folder."""
    import torch
    from transformers import AutoModelForCausalLM

    from ftdiag.testing import tiny

    tok = tiny.build_tokenizer()
    cfg = tiny_config(model_type, len(tok))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 3
    try:
        model.save_pretrained(out)
    except Exception as exc:
        raise Unbuildable(f"transformers cannot save it: {_line(exc)}") from exc
    tok.save_pretrained(out)
    return out


def train_adapters(base: Path, tmp: Path) -> tuple[Path, Path]:
    """(healthy, untrained twin): an all-linear LoRA adapter after STEPS AdamW steps on the toy
    texts, and the same adapter saved before its first step (lora_B all zero).

    Layers no gradient reaches (a decoder's unused cross-attention, a top-k indexer, an expert no
    token was routed to) are left out: A010 rightly reports them untrained.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftdiag.testing.tiny import TOY_TEXTS

    tok = AutoTokenizer.from_pretrained(str(base))
    batch = tok([t + tok.eos_token for t in TOY_TEXTS], return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM",
                     target_modules="all-linear")
    for _ in range(2):  # again, without them, when some layers got no gradient
        torch.manual_seed(0)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)), cfg)
        model.save_pretrained(str(tmp / "twin"))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        model.train()
        for _ in range(STEPS):
            model(**batch, labels=labels).loss.backward()
            opt.step()
            opt.zero_grad()
        dead = [n.removeprefix("base_model.model.").split(".lora_B.")[0]
                for n, p in model.named_parameters() if ".lora_B." in n and not p.any()]
        if not dead:
            break
        cfg.exclude_modules = dead
    model.eval().save_pretrained(str(tmp / "adapter"))
    for folder in ("twin", "adapter"):
        tok.save_pretrained(str(tmp / folder))
    return tmp / "adapter", tmp / "twin"


def peft_missing_keys(base: Path, adapter: Path) -> list[str]:
    """The adapter keys PEFT's own loader reports missing (it warns and keeps fresh weights)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)), str(adapter))
    lost = [str(w.message) for w in caught if "missing adapter keys" in str(w.message)]
    return re.findall(r"'([^']+)'", lost[0]) if lost else []


def hf_texts(base: Path, adapter: Path, prompts: list[str],
             new_tokens: int = NEW_TOKENS) -> dict[str, list[str]]:
    """HF generate's greedy texts per arm on one left-padded batch: `disable_adapter()` for base."""
    import torch
    from peft import PeftModel

    from ftdiag.model.load import load_base

    loaded = load_base(base)
    model, tok = PeftModel.from_pretrained(loaded.model, str(adapter)).eval(), loaded.tokenizer
    enc = tok(prompts, return_tensors="pt", padding=True)
    eos = model.generation_config.eos_token_id
    out: dict[str, list[str]] = {}
    for arm in ("base", "adapter"):
        with torch.inference_mode(), \
                model.disable_adapter() if arm == "base" else contextlib.nullcontext():
            ids = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False, num_beams=1,
                                 pad_token_id=tok.pad_token_id, eos_token_id=eos)
        rows = ids[:, enc["input_ids"].shape[1]:].tolist()
        out[arm] = [tok.decode(r[:r.index(eos)] if eos in r else r, skip_special_tokens=True)
                    for r in rows]
    return out


def markdown(results: list[FamilyResult], not_decoder_only: dict[str, str]) -> str:
    """docs/architectures.md: the families the sweep passed, the ones it skipped, and why."""
    import transformers

    ok = sorted((r for r in results if not r.skipped and not r.problems), key=lambda r: r.family)
    skipped = sorted((r for r in results if r.skipped), key=lambda r: r.family)
    failed = sorted((r for r in results if r.problems), key=lambda r: r.family)
    lines = ["# Architectures: the sweep", "",
             f"Written by `make arch-page` from `tests/test_arch_sweep.py` on transformers "
             f"{transformers.__version__}. Each decoder-only family of transformers' causal-LM "
             "mapping is built tiny from its own config class; a healthy all-linear adapter "
             f"({STEPS} AdamW steps) must pass `check-adapter`, its untrained twin must get "
             "A003, and `ab-test` texts must equal HF `generate` for base and adapter on a "
             "left-padded batch of prompts of different lengths.", "",
             f"**{len(ok)} passed, {len(failed)} failed, {len(skipped)} skipped** "
             f"(and {len(not_decoder_only)} model types that are not decoder-only).", "",
             "## Passed", "", "| family | how ab-test generated |", "|---|---|"]
    lines += [f"| {r.family} | {r.fast_path} |" for r in ok]
    if failed:
        lines += ["", "## Failed", "", "| family | problem |", "|---|---|"]
        lines += [f"| {r.family} | {r.problems[0].splitlines()[0][:200]} |" for r in failed]
    lines += ["", "## Skipped: cannot be built and run tiny here", "", "| family | why |",
              "|---|---|"]
    lines += [f"| {r.family} | {r.skipped.replace('|', '/')} |" for r in skipped]
    lines += ["", "## Not decoder-only", "", "| model type | why |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(not_decoder_only.items())]
    return "\n".join(lines) + "\n"
