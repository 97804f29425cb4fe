"""Layer T: what a named serving runtime will do with this adapter, from its own published rules.

RULES is the one table: each row says how a runtime treats the parts of a PEFT adapter, and
cites the source file and version it was read from. Nothing is run: the checks read the
adapter's config and tensor names, the base's config.json, and the layer S statistics.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ftdiag.adapters.files import AdapterFiles
from ftdiag.adapters.stats import LayerStat
from ftdiag.errors import FtdiagError
from ftdiag.findings import Finding, finding, passed

Treatment = Literal["applied", "refused", "ignored"]


@dataclass(frozen=True)
class RuntimeRules:
    """How one runtime serves the parts of a PEFT LoRA adapter."""

    name: str
    source: str  # file and version the row was read from
    modules_to_save: Treatment  # full tensors saved beside the LoRA pairs
    dora: Treatment  # lora_magnitude_vector
    lora_bias: Treatment  # lora_B.bias (LoraConfig(lora_bias=True))
    tied_lm_head: Treatment  # a LoRA on lm_head of a base that ties it to the embeddings
    rslora: bool  # scales α/√r when use_rslora (else α/r)
    rank_from: Literal["pair", "config"]  # r of each pair's tensors, or adapter_config's r
    builds_wrapper: bool  # builds *ForConditionalGeneration for a multimodal base (T001)
    architectures: frozenset[str] | None = None  # model_types it converts adapters for


LLAMA_CPP_SOURCE = ("convert_lora_to_gguf.py (get_tensors: any tensor other than lora_A/lora_B "
                    "or a norm exits; modify_tensors: lm_head on a tied base raises; one "
                    "adapter.lora.alpha = lora_alpha) and src/llama-adapter.h get_scale "
                    "(alpha / r), llama.cpp 0c1e57098; run in the tests")
RULES: dict[str, RuntimeRules] = {r.name: r for r in (
    RuntimeRules("llama.cpp", LLAMA_CPP_SOURCE, modules_to_save="refused", dora="refused",
                 lora_bias="refused", tied_lm_head="refused", rslora=False, rank_from="pair",
                 builds_wrapper=False),
    RuntimeRules("vllm", "vllm/lora/peft_helper.py (PEFTHelper: _validate_features refuses "
                 "modules_to_save and DoRA; from_dict keeps r, lora_alpha, use_rslora and "
                 "drops alpha_pattern / rank_pattern; validate_legal refuses bias without "
                 "bias_enabled), vllm-project/vllm e745baf; not run here",
                 modules_to_save="refused", dora="refused", lora_bias="ignored",
                 tied_lm_head="applied", rslora=True, rank_from="config", builds_wrapper=True),
    RuntimeRules("sglang", "python/sglang/srt/lora/lora_config.py (LoRAConfig reads "
                 "target_modules, r and lora_alpha only), sgl-project/sglang 8487760; not run "
                 "here", modules_to_save="ignored", dora="ignored", lora_bias="ignored",
                 tied_lm_head="applied", rslora=False, rank_from="config", builds_wrapper=True),
    RuntimeRules("tgi", "server/text_generation_server/adapters/lora.py (LoraConfig.load keeps "
                 "r, target_modules, fan_in_fan_out, lora_alpha, use_rslora; map_weights_for_"
                 "model maps lora_A/lora_B only), huggingface/text-generation-inference "
                 "45d95bd; not run here", modules_to_save="ignored", dora="ignored",
                 lora_bias="ignored", tied_lm_head="applied", rslora=True, rank_from="config",
                 builds_wrapper=True),
    RuntimeRules("ollama", "convert/convert.go ConvertAdapter (llama and gemma2 bases only; "
                 "writes adapter.lora.alpha), ollama 562c76d, then llama.cpp's scaling; not run "
                 "here", modules_to_save="refused", dora="refused", lora_bias="refused",
                 tied_lm_head="refused", rslora=False, rank_from="pair", builds_wrapper=False,
                 architectures=frozenset({"llama", "mistral", "gemma2"})),
)}


def parse_runtime(spec: str) -> tuple[RuntimeRules, str | None]:
    """`llama.cpp` or `vllm@0.11`: the rules and the version asked for (one line on a bad name)."""
    name, _, version = spec.strip().partition("@")
    key = name.lower().replace("llamacpp", "llama.cpp").replace("llama-cpp", "llama.cpp")
    if key not in RULES:
        raise FtdiagError(f"unknown --runtime {spec!r}",
                          hint=f"one of {', '.join(RULES)} (optionally NAME@VERSION)")
    if version and not VERSION.fullmatch(version):
        raise FtdiagError(f"--runtime {spec!r}: {version!r} is not a version",
                          hint="e.g. vllm@0.11.0, llama.cpp@b6500, tgi@3.3")
    return RULES[key], version or None


VERSION = re.compile(r"[vb]?\d+(\.\d+)*([.+-][0-9A-Za-z.]+)?")


def target_checks(spec: str, files: AdapterFiles, stats: list[LayerStat],
                  base_dir: Path | None) -> list[Finding]:
    """T001-T003 for the runtime named by spec."""
    rules, version = parse_runtime(spec)
    from ftdiag.model.load import read_config

    base_cfg = read_config(base_dir) if base_dir is not None else {}
    cfg = files.config or {}
    ev: dict[str, Any] = {"runtime": rules.name, "version": version, "source": rules.source}
    return [_layout(rules, files, base_cfg, ev), _modules(rules, files, stats, base_cfg, ev),
            _scaling(rules, cfg, files, stats, ev)]


def _layout(rules: RuntimeRules, files: AdapterFiles, base_cfg: dict[str, Any],
            ev: dict[str, Any]) -> Finding:
    """T001: a text-only adapter against a multimodal wrapper the runtime builds, or the reverse."""
    if not base_cfg:
        return Finding("T001", "skip", "no base config.json to compare the layout with")
    archs = [str(a) for a in base_cfg.get("architectures") or []]
    wrapper = any(a.endswith("ForConditionalGeneration") for a in archs)
    nested = any(".language_model." in k or k.startswith("language_model.")
                 for k in files.shapes)
    if not rules.builds_wrapper:
        return passed("T001", f"{rules.name} converts the adapter against the base's own "
                      "tensors", **ev)
    if wrapper and not nested:
        return finding("T001", f"{rules.name} builds {archs[0]} for this base, and the adapter's "
                       "keys are the text model's (model.layers.*): it loads, is listed, and "
                       "changes nothing", hint="train on the same model class the runtime "
                       "serves, or rename the keys to the wrapper's language_model prefix",
                       architectures=archs, **ev)
    if nested and archs and not wrapper:
        return finding("T001", f"the adapter's keys are a multimodal wrapper's "
                       f"(language_model.*), and {rules.name} builds {archs[0]}",
                       hint="rename the keys to the text model's prefix",
                       architectures=archs, **ev)
    return passed("T001", f"{rules.name} builds {archs[0] if archs else 'the base'}, the layout "
                  "the adapter was saved for", architectures=archs, **ev)


def _modules(rules: RuntimeRules, files: AdapterFiles, stats: list[LayerStat],
             base_cfg: dict[str, Any], ev: dict[str, Any]) -> Finding:
    """T002: the share of the update the runtime refuses or drops."""
    saved = sorted({k.removeprefix("base_model.model.") for k in files.shapes
                    if "lora_" not in k and not k.endswith(("norm.weight", "norm.bias"))})
    model_type = str(base_cfg.get("model_type") or "")
    problems: list[str] = []
    refused = False
    if rules.architectures is not None and model_type and model_type not in rules.architectures:
        kinds = ", ".join(sorted(rules.architectures))
        problems.append(f"{rules.name} converts adapters for {kinds} bases only, not {model_type}")
        refused = True
    if saved and rules.modules_to_save != "applied":
        problems.append(f"{len(saved)} full tensors from modules_to_save ({saved[0]}) are "
                        f"{rules.modules_to_save}")
        refused |= rules.modules_to_save == "refused"
    tied = bool(base_cfg.get("tie_word_embeddings", False))
    head = [s for s in stats if s.module.endswith("lm_head")]
    if head and tied and rules.tied_lm_head != "applied":
        problems.append(f"a LoRA on lm_head of a base that ties it to the embeddings is "
                        f"{rules.tied_lm_head}")
        refused |= rules.tied_lm_head == "refused"
    dropped = head if tied and rules.tied_lm_head == "ignored" else []
    total = math.fsum(s.delta_norm ** 2 for s in stats if math.isfinite(s.delta_norm))
    share = 1.0 if refused else (math.fsum(s.delta_norm ** 2 for s in dropped) / total
                                 if total > 0 else 0.0)
    evidence = {**ev, "modules_to_save": saved[:20], "share_dropped": share}
    if not problems:
        return passed("T002", f"{rules.name} applies every adapted module ({len(stats)})",
                      **evidence)
    what = "refuses the adapter: nothing is served" if refused else \
        f"drops {share:.0%} of the update"
    hint = ("train without modules_to_save (or merge the adapter and serve the merged model), "
            "and keep LoRA off a tied lm_head")
    status = "fail" if refused or share >= 1.0 else "warn" if share > 0.10 or saved else "info"
    return finding("T002", f"{rules.name} {what}: {'; '.join(problems)}", hint=hint,
                   status=status, **evidence)  # type: ignore[arg-type]


def _scaling(rules: RuntimeRules, cfg: dict[str, Any], files: AdapterFiles,
             stats: list[LayerStat], ev: dict[str, Any]) -> Finding:
    """T003: the served scale against PEFT's, per module; DoRA and lora_bias."""
    lost: list[str] = []
    dora = bool(cfg.get("use_dora")) or any("lora_magnitude_vector" in k for k in files.shapes)
    bias = bool(cfg.get("lora_bias")) or any(".lora_B.bias" in k for k in files.shapes)
    for used, what, treat in ((dora, "DoRA magnitudes", rules.dora),
                              (bias, "lora_bias", rules.lora_bias)):
        if used and treat != "applied":
            lost.append(f"{what} are {treat}" + (" (the adapter is not loaded)"
                                                 if treat == "refused" else ""))
    ratios: dict[str, float] = {}
    for s in stats:
        served = _served_scale(rules, cfg, s.rank)
        if s.scaling and served is not None and abs(served / s.scaling - 1) > 1e-6:
            ratios[s.module] = served / s.scaling
    evidence = {**ev, "ratios": dict(list(ratios.items())[:20]),
                "ratio_range": [min(ratios.values()), max(ratios.values())] if ratios else None}
    if lost:
        return finding("T003", f"{rules.name}: {'; '.join(lost)}", status="fail" if any(
            "refused" in x for x in lost) else "warn", hint="merge the adapter into the base "
            "(ftdiag merge) and serve the merged model", **evidence)  # type: ignore[arg-type]
    if ratios:
        lo, hi = min(ratios.values()), max(ratios.values())
        why = ("use_rslora served as α/r" if cfg.get("use_rslora") and not rules.rslora
               else "alpha_pattern / rank_pattern collapsed to one α/r")
        span = f"{lo:.3g}" if math.isclose(lo, hi) else f"{lo:.3g} to {hi:.3g}"
        return finding("T003", f"{rules.name} scales {len(ratios)} of {len(stats)} modules "
                       f"by {span}× what PEFT trained ({why})", status="warn",
                       hint="write the alpha that gives PEFT's scale (ftdiag check-export shows "
                            "the number for a LoRA GGUF), or merge and serve the merged model",
                       **evidence)
    return passed("T003", f"{rules.name} scales every module as PEFT does", **evidence)


def _served_scale(rules: RuntimeRules, cfg: dict[str, Any], rank: int) -> float | None:
    """The scale the runtime gives a pair of this rank: one α, over the pair's or the config's r."""
    alpha = float(cfg.get("lora_alpha") or 0)
    if not alpha:
        return None
    r = rank if rules.rank_from == "pair" else int(cfg.get("r") or rank)
    return alpha / (math.sqrt(r) if cfg.get("use_rslora") and rules.rslora else r)
