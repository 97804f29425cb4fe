"""Layer R: audit a live model object (R001-R006, R008, R009); the one owner of the R rules.

check-adapter, ab-test, doctor and `ftdiag.audit_model` all call `audit_runtime`. Its `base`
argument is the object the caller means to use as the base arm (None: the adapters switched off
on the same weights); R004 proves that arm is the base model before any text is trusted. The R
checks judge the reference path (each prompt alone, `disable_adapter()` for the base); whether
ftdiag's fast path agrees with it is measured apart (`FastPath`) and is never a user finding.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftdiag.adapters.details import CheckDetails, RuntimeDetails, StatusLine
from ftdiag.adapters.probe import (
    DiskMatch,
    ProbeResult,
    compare_with_disk,
    default_probes,
    fast_path,
    logit_probe,
)
from ftdiag.findings import Finding, Report, finding, passed
from ftdiag.generation.arms import Arm, FastPath, GenSettings, generation_config, prompt_logits
from ftdiag.model.live import BASE, lora_b_nonzero, lora_layers, preserved_state
from ftdiag.timing import phase, timed

log = logging.getLogger(__name__)

LOGIT_TOL = 1e-4


@dataclass
class RuntimeAudit:
    """The R checks of one live model, and the arms they proved fit for an A/B comparison."""

    report: Report
    base_arm: Arm
    adapter_arm: Arm
    lora_layers: int
    fast_path: FastPath  # used=False: generate through the reference path (GenSettings.fast)


def audit_model(model: Any, base: Any = None, tokenizer: Any = None,
                probes: list[str] | None = None, adapter_dir: str | Path | None = None, *,
                logit_tol: float = LOGIT_TOL) -> Report:
    """Check a loaded (PEFT) model as your app holds it: injected, active, eval, has an effect."""
    return audit_runtime(model, base, tokenizer, probes, adapter_dir, logit_tol=logit_tol).report


@timed("runtime_checks")
def audit_runtime(model: Any, base: Any = None, tokenizer: Any = None,
                  probes: list[str] | None = None, adapter_dir: str | Path | None = None, *,
                  logit_tol: float = LOGIT_TOL, settings: GenSettings | None = None,
                  to_eval: bool = False) -> RuntimeAudit:
    """Every R check once. settings: how the caller will generate (R008 judges those);
    to_eval: leave the model in eval mode (for generating) instead of restoring its mode."""
    report = Report("check-adapter", layers_run=["R"])
    layers = lora_layers(model)
    status = _peft_status(model)
    matches = compare_with_disk(model, adapter_dir) if adapter_dir and layers else []
    lines = _status_lines(model, status, matches, adapter_dir)
    rt = RuntimeDetails(lines, len(layers))
    report.details = CheckDetails(runtime=rt)
    r003 = _train_mode(model, to_eval)
    if tokenizer is not None:
        probes = probes or default_probes(adapter_dir, tokenizer)
    probed = _probe_effect(model, tokenizer, probes, layers, status)
    rt.fast_path = fast = _fast_path(model, tokenizer, probes, layers, probed)
    if fast.gap is not None:  # ftdiag's own consistency: shown, never red
        lines.append(StatusLine("fast path = reference", fast.used, fast.reason, ok=True))
    with phase("r004_guard"):
        r004, base_arm = _base_arm(model, base, tokenizer, (probes or [])[:1], layers, probed,
                                   fast)
    report.add(_injected(model, layers, matches), _active(status, matches, layers), r003, r004)
    report.add(_effect(probed, rt, logit_tol))
    report.add(_on_disk(matches, adapter_dir, layers), _sampling(model, tokenizer, settings))
    report.add(_pad_is_eos(tokenizer, adapter_dir))
    adapter_arm = Arm("adapter", model, str(getattr(model, "active_adapter", "default")))
    return RuntimeAudit(report, base_arm, adapter_arm, len(layers), fast)


def _peft_status(model: Any) -> dict[str, Any]:
    """peft's get_model_status as a dict ({} when the object is not a tuner model)."""
    from dataclasses import asdict

    from peft.peft_model import get_model_status

    try:
        return asdict(get_model_status(model))
    except (TypeError, AttributeError, ValueError) as exc:
        log.debug("get_model_status failed: %s", exc)
        return {}


def _status_lines(model: Any, st: dict[str, Any], matches: list[DiskMatch],
                  adapter_dir: str | Path | None) -> list[StatusLine]:
    """The runtime status lines: each a name, a true/false value and its evidence."""
    names = list(getattr(model, "peft_config", {}) or {})
    good = [m.adapter for m in matches if m.ok]
    loaded = (f"{adapter_dir} (matches adapter {good[0]!r})" if good else
              f"{adapter_dir}: no adapter in the model matches the file" if adapter_dir else
              "no adapter_dir given")
    merged = st.get("merged_adapters", [])
    return [
        StatusLine("adapter loaded from path", bool(good), loaded),
        StatusLine("PEFT config present", bool(names), ", ".join(names) or "-"),
        StatusLine("active adapters", st.get("active_adapters") not in ([], "irregular", None),
                   str(st.get("active_adapters", "-"))),
        StatusLine("enabled", st.get("enabled") is True, str(st.get("enabled", "-"))),
        StatusLine("merged", bool(merged) and merged != "irregular", str(merged or "none"),
                   ok=merged != "irregular"),
        StatusLine("eval mode", not model.training, "model.training=" + str(model.training)),
    ]


def _injected(model: Any, layers: list[tuple[str, Any]], matches: list[DiskMatch]) -> Finding:
    """R001: LoRA layers exist and hold trained (non-zero) lora_B, unless the file is zero too."""
    if not layers:
        return finding("R001", f"{type(model).__name__} has no LoRA layers",
                       hint="load with PeftModel.from_pretrained(base, adapter_dir)")
    has_b = any(".lora_B." in n or "lora_embedding_B" in n for n, _ in model.named_parameters())
    if has_b and not lora_b_nonzero(model):
        if any(m.ok for m in matches):
            return passed("R001", f"{len(layers)} LoRA layers injected; their lora_B are zero "
                                  "exactly as in the file (see A003)", lora_layers=len(layers))
        return finding("R001", f"{len(layers)} LoRA layers, but every lora_B is zero: a fresh "
                               "adapter (get_peft_model) rather than the trained one",
                       hint="load the trained weights with PeftModel.from_pretrained",
                       lora_layers=len(layers))
    return passed("R001", f"{len(layers)} LoRA layers injected", lora_layers=len(layers))


def _active(st: dict[str, Any], matches: list[DiskMatch],
            layers: list[tuple[str, Any]]) -> Finding:
    """R002: adapter layers enabled, one consistent active set, the loaded adapter among it."""
    if not layers:
        return Finding("R002", "skip", "skipped: no LoRA layers (R001)")
    enabled, active = st.get("enabled"), st.get("active_adapters")
    problems = []
    if enabled is not True:
        problems.append(f"adapter layers enabled={enabled}")
    if active in ("irregular", [], None):
        problems.append(f"active adapters={active}")
    if st.get("merged_adapters") == "irregular":
        problems.append("merged state irregular")
    good = [m.adapter for m in matches if m.ok]
    if good and isinstance(active, list) and active and not set(good) & set(active):
        problems.append(f"active adapter {active} is not the one loaded from disk ({good[0]})")
    if problems:
        return finding("R002", "; ".join(problems),
                       hint="call model.enable_adapter_layers() / model.set_adapter(name); do "
                            "not leave the model inside a disable_adapter() block",
                       enabled=enabled, active_adapters=active,
                       available=st.get("available_adapters"))
    return passed("R002", f"enabled, active adapters {active}")


def _train_mode(model: Any, to_eval: bool) -> Finding:
    """R003: the model and its dropout modules are in eval mode (switched there when to_eval)."""
    import torch.nn as nn

    drops = [n for n, m in model.named_modules()
             if isinstance(m, nn.Dropout) and m.training and m.p > 0]
    if model.training or drops:
        message = (f"model.training={model.training}, {len(drops)} dropout modules active"
                   + (f" (e.g. {drops[0]})" if drops else ""))
        if to_eval:
            model.eval()
            message += "; switched to eval"
        return finding("R003", message, hint="call model.eval() before generating",
                       training=model.training, dropout_modules=drops[:10], count=len(drops))
    return passed("R003", "eval mode, no active dropout")


def _fast_path(model: Any, tokenizer: Any, probes: list[str] | None,
               layers: list[tuple[str, Any]], probed: ProbeResult | str) -> FastPath:
    """The fast path checked against R005's reference logits (or the adapter's alone)."""
    from ftdiag.adapters.probe import alone_logits

    if not layers or tokenizer is None or not probes:
        return FastPath(reason="not measured: no LoRA layers or no tokenizer")
    if isinstance(probed, ProbeResult):
        return fast_path(model, tokenizer, probes, (probed.on, probed.on_next),
                         (probed.off, probed.off_next))
    with preserved_state(model):
        on = alone_logits(model, [tokenizer(p)["input_ids"] for p in probes], step=True)
    return fast_path(model, tokenizer, probes, on, None)


def _base_arm(model: Any, base: Any, tokenizer: Any, probe: list[str],
              layers: list[tuple[str, Any]], probed: ProbeResult | str,
              fast: FastPath) -> tuple[Finding, Arm]:
    """R004: the object used as the base arm carries no LoRA and returns the base's logits.

    A contaminated `base` is replaced by the adapters switched off on `model` (one weight copy).
    probed: R005's reference logits of the probes (adapters on and off) when it measured them.
    """
    off = Arm("base", model, BASE)
    if not layers:
        return Finding("R004", "skip", "skipped: no LoRA layers (R001)"), off
    arm, bad = off, None
    if base is not None:
        inner = model.get_base_model() if hasattr(model, "get_base_model") else None
        carried = len(lora_layers(base))
        if carried or base is model or base is inner:
            same = "is the adapter model's own base module" if base is inner or base is model \
                else f"carries {carried} LoRA layers"
            bad = finding("R004", f"the 'base' object {same}: PEFT injected the adapter in place, "
                          "so base-vs-adapter would compare the adapter with itself",
                          hint="load a second, clean base for comparisons, or use "
                               "`with model.disable_adapter():` as the base arm (ftdiag did)",
                          lora_layers=carried, same_object=base is inner or base is model,
                          replaced_by="disable_adapter")
        else:
            arm = Arm("base", base, None)
    if tokenizer is None or not probe:
        return bad or (passed("R004", "the base object carries no LoRA layers") if base is not None
                       else Finding("R004", "skip", "skipped: no tokenizer to probe the base arm")
                       ), arm
    if bad is not None:
        return bad, arm
    with preserved_state(model):
        return _probe_base_arm(model, arm, tokenizer, probe[0], probed, fast), arm


def _probe_base_arm(model: Any, arm: Arm, tokenizer: Any, probe: str, probed: ProbeResult | str,
                    fast: FastPath) -> Finding:
    """R004 on one prompt: the base arm's logits differ from the adapter's when lora_B != 0.

    Judged on the reference path (the prompt alone; R005's logits when the base arm is
    `disable_adapter()`). The fast path's agreement with it is `fast`, said in the message only.
    """
    from ftdiag.generation.metrics import logit_gap

    if arm.adapter == BASE and isinstance(probed, ProbeResult) and probed.off:
        got_base, got_adapter = probed.off[0], probed.on[0]
    else:  # the adapter side as R005's: the model as it is (no set_adapter, which would narrow
        # several active adapters to one, and leave them so)
        got_base = prompt_logits(arm, tokenizer, [probe])[0]
        got_adapter = prompt_logits(Arm("adapter", model, None), tokenizer, [probe])[0]
    gap = logit_gap([got_base], [got_adapter])
    if lora_b_nonzero(model) and gap.max_abs == 0.0:
        return finding("R004", "the base arm returns exactly the adapter's logits although "
                       "lora_B is non-zero: it is not the base model", max_abs_diff=0.0)
    path = "separate model" if arm.adapter is None else "disable_adapter()"
    note = "" if fast.used else f" ({fast.note})"
    return passed("R004", f"base arm is the base model: LoRA off, max |Δlogit| vs adapter "
                  f"{gap.max_abs:.3g}{note}", path=path, max_abs_diff=gap.max_abs,
                  fast_path=fast.used, fast_path_gap=fast.gap)


def _probe_effect(model: Any, tokenizer: Any, probes: list[str] | None,
                  layers: list[tuple[str, Any]], st: dict[str, Any]) -> ProbeResult | str:
    """R005's measurement (adapter on vs off on the probe prompts), or why it is skipped."""
    if not layers:
        return "skipped: no LoRA layers (R001)"
    if tokenizer is None:
        return "skipped: no tokenizer given"
    if st.get("merged_adapters"):
        return "skipped: adapter merged, no base arm without unmerging"
    return logit_probe(model, tokenizer, probes or [])


def _effect(res: ProbeResult | str, rt: RuntimeDetails, tol: float) -> Finding:
    """R005: the adapter must change next-token logits on the probe prompts."""
    if isinstance(res, str):
        return Finding("R005", "skip", res)
    rt.probe = {"max_abs_diff": res.max_abs_diff, "mean_kl": res.mean_kl,
                   "greedy_changed": res.greedy_changed, "prompts": res.prompts,
                   "tolerance": tol, "per_prompt": res.per_prompt}
    evidence = (f"max |Δlogit| {res.max_abs_diff:.3g}, mean KL {res.mean_kl:.3g}, greedy next "
                f"token changed on {res.greedy_changed}/{res.prompts} probes")
    if not res.max_abs_diff > tol:  # also catches NaN
        return finding("R005", evidence + f" (tolerance {tol:g})",
                       hint="the adapter as loaded does nothing observable: see the A/R "
                            "findings above for why", max_abs_diff=res.max_abs_diff,
                       mean_kl=res.mean_kl, greedy_changed=res.greedy_changed)
    return passed("R005", evidence, max_abs_diff=res.max_abs_diff, mean_kl=res.mean_kl)


def _on_disk(matches: list[DiskMatch], adapter_dir: str | Path | None,
             layers: list[tuple[str, Any]]) -> Finding:
    """R006: some adapter in the model holds exactly the weights in the file."""
    if adapter_dir is None:
        return Finding("R006", "skip", "skipped: no adapter_dir to compare with")
    if not layers or not matches:
        return Finding("R006", "skip", "skipped: no PEFT adapter in the model to compare")
    if any(m.ok for m in matches):
        m = next(m for m in matches if m.ok)
        return passed("R006", f"adapter {m.adapter!r}: {m.compared} tensors equal the file")
    m = min(matches, key=lambda x: len(x.dropped) + len(x.differing))
    parts = []
    if m.dropped:
        parts.append(f"{len(m.dropped)} file tensors missing from the model (e.g. {m.dropped[0]})")
    if m.differing:
        parts.append(f"{len(m.differing)} tensors differ (max |Δ| {m.max_diff:.3g})")
    return finding("R006", f"adapter {m.adapter!r}: " + "; ".join(parts or ["nothing compared"]),
                   hint="keys dropped on load (prefix mismatch) or a fresh get_peft_model "
                        "adapter instead of PeftModel.from_pretrained",
                   dropped=m.dropped[:20], differing=m.differing[:20], max_diff=m.max_diff)


def _sampling(model: Any, tokenizer: Any, settings: GenSettings | None) -> Finding:
    """R008: generation must not sample when outputs are compared.

    settings: how ftdiag will generate (it overrides generation_config); None: judge the model's.
    """
    if settings is not None:
        if settings.do_sample:
            return finding("R008", f"sampling at temperature {settings.temperature} (seed "
                           f"{settings.seed}): differences may be chance",
                           hint="drop --sample for a greedy A/B",
                           temperature=settings.temperature, seed=settings.seed)
        over = generation_config(model, tokenizer, settings)[1] if tokenizer is not None else {}
        note = f" (overrode {over} from generation_config.json)" if over else ""
        return passed("R008", f"greedy decoding, num_beams=1{note}", overridden=over)
    gc = getattr(model, "generation_config", None)
    if gc is not None and getattr(gc, "do_sample", False):
        return finding("R008", f"generation_config.do_sample=True (temperature="
                               f"{getattr(gc, 'temperature', None)}, top_p="
                               f"{getattr(gc, 'top_p', None)})",
                       hint="pass do_sample=False for A/B comparisons",
                       temperature=getattr(gc, "temperature", None))
    return passed("R008", "greedy decoding (do_sample=False)")


def _pad_is_eos(tokenizer: Any, adapter_dir: str | Path | None) -> Finding:
    """R009: pad token must differ from EOS (tokenizer saved with the adapter, else the base's)."""
    tok, source = tokenizer, "base tokenizer"
    if adapter_dir and (Path(adapter_dir) / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        try:
            tok, source = AutoTokenizer.from_pretrained(str(adapter_dir)), "adapter tokenizer"
        except Exception as exc:  # a broken tokenizer file: fall back to the base's
            log.debug("cannot load adapter tokenizer: %s", exc)
    if tok is None:
        return Finding("R009", "skip", "skipped: no tokenizer")
    pad, eos = tok.pad_token_id, tok.eos_token_id
    if pad is not None and pad == eos:
        return finding("R009", f"{source}: pad_token {tok.pad_token!r} == eos_token (id {eos})",
                       hint="a collator that masks pad labels also masks EOS; add a distinct "
                            "pad token", pad_token=tok.pad_token, source=source)
    return passed("R009", f"{source}: pad {tok.pad_token!r} != eos {tok.eos_token!r}")
