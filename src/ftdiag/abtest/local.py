"""ab-test: the same titles through base, adapter (and merged), greedy, side by side.

One copy of the base weights: the base arm is PEFT's `__base__` rows in a mixed batch (or
`disable_adapter()`), checked on a probe prompt before any text is trusted (R004).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ftdiag.adapters.folder import other_adapters_note
from ftdiag.adapters.runtime import RuntimeAudit, audit_runtime
from ftdiag.distributed import gather, split, world
from ftdiag.errors import FtdiagError
from ftdiag.findings import Details, Finding, Report, finding, passed
from ftdiag.generation.arms import (
    Arm,
    ArmOutput,
    FastPath,
    GenSettings,
    arm_context,
    arm_groups,
    context_length,
    generate_arms,
    generate_one,
    prompt_logits,
)
from ftdiag.generation.metrics import (
    first_divergence,
    logit_gap,
    mean,
    merged_gap_finding,
    reference_nll,
    rouge_l,
    token_f1,
)
from ftdiag.model.dtype import DtypeChoice, choose_dtype, model_dtype
from ftdiag.model.live import BASE
from ftdiag.progress import ProgressFn
from ftdiag.prompts.records import Record
from ftdiag.prompts.template import DEFAULT_TEMPLATE, PromptTemplate, recorded_template
from ftdiag.timing import phase

log = logging.getLogger(__name__)

RUNAWAY_SHARE = 0.5
PROBES = 4


@dataclass
class ABConfig:
    """What to compare and how to generate."""

    adapter_dir: Path | str
    base: str | None = None
    merged_dir: Path | str | None = None
    template: PromptTemplate | None = None  # None: the recorded template, else the default
    max_new_tokens: int = 128
    batch_size: int = 0  # titles per batch; 0: from the workload (generate.auto_batch)
    do_sample: bool = False
    temperature: float = 1.0
    seed: int = 0
    check_batch: bool = False
    max_identical: float | None = None  # B001 when the identical share exceeds this
    revision: str | None = None  # Hub revision of the base (when it is a Hub id)
    adapter_revision: str | None = None  # Hub revision of the adapter (when it is a Hub id)
    dtype: str = "auto"  # both arms' dtype: auto (bf16 where the CPU has it natively), fp32, ...

    def settings(self) -> GenSettings:
        """How every arm generates."""
        return GenSettings(self.max_new_tokens, self.batch_size, self.do_sample,
                           self.temperature, self.seed)


@dataclass
class ABRow:
    """One title: its prompt and every arm's output."""

    title: str
    reference: str | None
    prompt: str
    outputs: dict[str, str]
    tokens: dict[str, int]
    hit_max: dict[str, bool]
    first_divergent_token: int | None
    identical: bool
    truncated: bool = False
    uid: str | None = None
    rouge_l: dict[str, float] = field(default_factory=dict)
    token_f1: dict[str, float] = field(default_factory=dict)
    ref_nll: dict[str, float] = field(default_factory=dict)
    merged_first_divergent_token: int | None = None


@dataclass
class Divergence:
    """Where base and adapter texts part, over the titles that differ (token index)."""

    mean: float | None = None
    min: int | None = None


@dataclass
class PlanSummary:
    """How the arms were generated (shown so nobody has to trust it)."""

    mixed_batch: bool = False
    generate_calls: int = 0
    rows: int = 0
    fast_path: FastPath = field(default_factory=FastPath)  # used=False: the reference path ran


REFERENCE_METRICS = ("rouge_l", "token_f1", "ref_nll")


@dataclass
class AbSummary:
    """ab-test's figures; per-arm dicts are keyed by arm name (base, adapter, merged).

    The reference metrics are None (and absent from --json) when no title has a reference.
    """

    n: int = 0
    identical: int = 0
    identical_share: float = 0.0
    first_divergent_token: Divergence = field(default_factory=Divergence)
    mean_new_tokens: dict[str, float] = field(default_factory=dict)
    hit_max_share: dict[str, float] = field(default_factory=dict)
    generation_config: dict[str, Any] = field(default_factory=dict)
    generation_overridden: dict[str, Any] = field(default_factory=dict)
    plan: PlanSummary = field(default_factory=PlanSummary)
    dtype: DtypeChoice = field(default_factory=lambda: DtypeChoice("float32", "not recorded"))
    n_with_reference: int | None = None
    rouge_l: dict[str, float] | None = None
    token_f1: dict[str, float] | None = None
    ref_nll: dict[str, float] | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The --json form: reference metrics only when there were references."""
        out = asdict(self)
        for key in ("n_with_reference", *REFERENCE_METRICS):
            if out[key] is None:
                del out[key]
        return out


@dataclass
class AbDetails(Details):
    """ab-test's report details: the summary, one row per title, the template's source."""

    summary: AbSummary
    rows: list[ABRow]
    template: str


@dataclass
class ABResult:
    """The report (command 'ab-test'), per-title rows and the summary doctor reads."""

    report: Report
    rows: list[ABRow] = field(default_factory=list)
    summary: AbSummary = field(default_factory=AbSummary)


def choose_template(cfg: ABConfig) -> tuple[PromptTemplate, Finding]:
    """The template to use, and R010 when it differs from the one recorded at training time."""
    recorded = recorded_template(cfg.adapter_dir)
    if cfg.template is None:
        tpl = recorded or PromptTemplate(DEFAULT_TEMPLATE)
        return tpl, passed("R010", f"prompt template: {tpl.source}", source=tpl.source)
    if recorded is not None and recorded.text != cfg.template.text:
        return cfg.template, finding(
            "R010", f"template {cfg.template.source} differs from the one recorded at training",
            hint="drop --template/--chat-template to use the recorded one",
            used=cfg.template.source, recorded=recorded.text)
    return cfg.template, passed("R010", f"prompt template: {cfg.template.source}",
                                source=cfg.template.source)


def fit_prompt(title: str, tpl: PromptTemplate, tokenizer: Any, budget: int) -> tuple[str, bool]:
    """The prompt for `title`, the title cut so prompt + new tokens fit the context."""
    prompt = tpl.render(title, tokenizer)
    n = len(tokenizer(prompt)["input_ids"])
    if n <= budget:
        return prompt, False
    overhead = len(tokenizer(tpl.render("", tokenizer))["input_ids"])
    keep = budget - overhead - 1
    if keep < 1:
        raise FtdiagError(f"the prompt template alone ({overhead} tokens) leaves no room in the "
                          f"context for the title", hint="lower --max-new-tokens")
    ids = tokenizer(title, add_special_tokens=False)["input_ids"][:keep]
    return tpl.render(tokenizer.decode(ids), tokenizer), True


def load_pair(cfg: ABConfig) -> tuple[Any, Any, Report, DtypeChoice | None]:
    """Preflight (layer S), then base + adapter loaded once (PeftModel) and its tokenizer,
    in the dtype `cfg.dtype` chooses (one model: both arms share it)."""
    from ftdiag.adapters.consistency import try_load_adapter
    from ftdiag.adapters.preflight import preflight
    from ftdiag.model.load import load_base, pick_device_dtype

    pre = preflight(cfg.adapter_dir, cfg.base, revision=cfg.revision,
                    adapter_revision=cfg.adapter_revision)
    if pre.blocked:
        return None, None, pre.static, None
    assert pre.base_dir is not None  # resolved, or preflight raised / A001 blocked
    with phase("load"):
        device, _ = pick_device_dtype()
        choice = choose_dtype(cfg.dtype, device)
    loaded = load_base(pre.base_dir, device, choice.torch_dtype)
    model, refused = try_load_adapter(loaded, pre.adapter_dir)
    if refused is not None:  # A011: a fail with PEFT's reason, not an exit 2
        pre.static.add(refused)
        return None, None, pre.static, None
    return model, loaded.tokenizer, pre.static, choice


def _load_merged(path: Path | str, like: Any) -> Any:
    from transformers import AutoModelForCausalLM

    from ftdiag.model.load import resolve_model_dir

    folder = resolve_model_dir(path)
    param = next(like.parameters())
    try:
        with phase("load"):
            model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=param.dtype)
    except Exception as exc:
        raise FtdiagError(f"cannot load the merged model from {folder}: {exc}") from exc
    return model.to(param.device).eval()


def run_ab_test(cfg: ABConfig, records: list[Record], *, model: Any = None, tokenizer: Any = None,
                progress: ProgressFn | None = None, base_model: Any = None,
                audit: RuntimeAudit | None = None, dtype: DtypeChoice | None = None) -> ABResult:
    """Generate every title under base, adapter (and merged) and compare.

    model: an already-loaded PeftModel holding this adapter (loaded here when None);
    base_model: a caller's separate 'base' object, checked for LoRA layers (R004) before use;
    audit: the R layer the caller already ran on `model` (doctor), not run again nor reported;
    dtype: how the caller chose `model`'s dtype (default: read from the model).
    """
    records = [r for r in records if r.title.strip()]
    if not records:
        raise FtdiagError("no titles to test (all empty)")
    from ftdiag.model.load import resolve_adapter_dir

    cfg = replace(cfg, adapter_dir=resolve_adapter_dir(cfg.adapter_dir, cfg.adapter_revision))
    report = Report("ab-test")
    tpl, r010 = choose_template(cfg)
    own = model is None
    choice = dtype
    if own:
        model, tokenizer, static, choice = load_pair(cfg)
        report.add(*static.checks)
        report.layers_run.append("S")
        if model is None:
            report.layers_skipped.update({"R": "static layer failed", "G": "static layer failed"})
            return ABResult(report)
    elif tokenizer is None:
        raise ValueError("run_ab_test(model=...) needs the tokenizer too")
    settings = cfg.settings()
    budget = context_length(model, tokenizer) - cfg.max_new_tokens
    fitted = [fit_prompt(r.title, tpl, tokenizer, budget) for r in records]
    prompts = [p for p, _ in fitted]
    if audit is None:
        audit = audit_runtime(model, base_model, tokenizer, None, cfg.adapter_dir,
                              settings=settings, to_eval=True)
        report.add(*audit.report.checks)
    if not audit.lora_layers:
        raise FtdiagError("the model holds no LoRA layers (R001): nothing to compare",
                          hint="load it with PeftModel.from_pretrained(base, adapter_dir)")
    report.add(r010)
    report.layers_run += ["R", "G"]
    settings = replace(settings, fast=audit.fast_path)
    arms = [audit.base_arm, audit.adapter_arm]
    merged = _load_merged(cfg.merged_dir, model) if cfg.merged_dir else None
    if merged is not None:
        arms.append(Arm("merged", merged, None))
    outputs, plan, gen = generate_arms(tokenizer, prompts, arms, settings, progress)
    rows = _rows(records, fitted, outputs)
    if any(r.reference for r in rows):
        with phase("reference_nll"):
            _reference_metrics(rows, arms, tokenizer, context_length(model, tokenizer), settings)
    summary = _summary(rows, [a.name for a in arms], gen, plan)
    summary.plan.fast_path = audit.fast_path
    summary.dtype = choice or model_dtype(model)
    report.add(_identical_check(rows, cfg.max_identical))
    report.add(_runaway_check(summary, cfg.max_new_tokens))
    if cfg.check_batch:
        report.add(_batch_check(rows, prompts, arms, tokenizer, settings, outputs))
    if merged is not None:
        report.add(_merged_check(arms[1], arms[2], prompts[:PROBES], tokenizer, rows))
    warnings = [f"title {i + 1} truncated to fit the context" for i, r in enumerate(rows)
                if r.truncated]
    notes = [other_adapters_note(cfg.adapter_dir), audit.fast_path.note]
    summary.warnings = [n for n in notes if n] + warnings
    report.details = AbDetails(summary, rows, tpl.source)
    return ABResult(report, rows, summary)


def _rows(records: list[Record], fitted: list[tuple[str, bool]],
          outputs: dict[str, list[ArmOutput]]) -> list[ABRow]:
    rows = []
    for i, rec in enumerate(records):
        outs = {arm: o[i] for arm, o in outputs.items()}
        base, adapter = outs["base"].ids, outs["adapter"].ids
        row = ABRow(
            title=rec.title, reference=rec.content or None, prompt=fitted[i][0],
            outputs={a: o.text for a, o in outs.items()},
            tokens={a: len(o.ids) for a, o in outs.items()},
            hit_max={a: o.hit_max for a, o in outs.items()},
            first_divergent_token=first_divergence(base, adapter), identical=base == adapter,
            truncated=fitted[i][1], uid=rec.uid)
        if "merged" in outs:
            row.merged_first_divergent_token = first_divergence(adapter, outs["merged"].ids)
        rows.append(row)
    return rows


def _reference_metrics(rows: list[ABRow], arms: list[Arm], tokenizer: Any, ctx: int,
                       s: GenSettings) -> None:
    """ROUGE-L, token-F1 vs the reference per arm, and the reference's NLL under each arm.

    The NLL runs mixable arms in one mixed batch, and each process of a launch on its shard.
    """
    scored = [r for r in rows if r.reference]
    for r in scored:
        for name, text in r.outputs.items():
            r.rouge_l[name] = rouge_l(text, r.reference or "")
            r.token_f1[name] = token_f1(text, r.reference or "")
    mine = split(list(range(len(scored))), *world())
    prompts = [scored[i].prompt for i in mine]
    refs = [scored[i].reference or "" for i in mine]
    local: list[tuple[int, str, float]] = []
    for group in arm_groups(arms, s.fast.used and s.fast.mixed):
        names = [a.adapter or BASE for a in group] if len(group) > 1 else None
        with arm_context(group[0]) if names is None else contextlib.nullcontext():
            values = reference_nll(group[0].model, tokenizer, prompts, refs, names, max_len=ctx,
                                   batch_size=s.batch_size or 8)
        per = len(group)
        for k, i in enumerate(mine):
            local += [(i, arm.name, values[k * per + j]) for j, arm in enumerate(group)]
    for i, name, value in gather(local):
        scored[i].ref_nll[name] = value
    for r in scored:  # arm order as in `arms`, whatever the group order
        r.ref_nll = {a.name: r.ref_nll[a.name] for a in arms}


def _summary(rows: list[ABRow], arms: list[str], gen: dict[str, Any], plan: Any) -> AbSummary:
    n = len(rows)
    identical = sum(r.identical for r in rows)
    divergent = [r.first_divergent_token for r in rows if r.first_divergent_token is not None]
    s = AbSummary(
        n=n, identical=identical, identical_share=identical / n if n else 0.0,
        first_divergent_token=Divergence(mean([float(d) for d in divergent]),
                                         min(divergent, default=None)),
        mean_new_tokens={a: sum(r.tokens[a] for r in rows) / n for a in arms},
        hit_max_share={a: sum(r.hit_max[a] for r in rows) / n for a in arms},
        generation_config=gen["effective"], generation_overridden=gen["overridden_from_model"],
        plan=PlanSummary(plan.mixed_batch, plan.calls, plan.rows))
    scored = [r for r in rows if r.reference]
    if scored:
        s.n_with_reference = len(scored)
        for key in REFERENCE_METRICS:
            setattr(s, key, {a: mean([getattr(r, key)[a] for r in scored]) for a in arms})
    return s


def _identical_check(rows: list[ABRow], max_identical: float | None) -> Finding:
    n, same = len(rows), sum(r.identical for r in rows)
    share = same / n
    evidence: dict[str, Any] = {"identical": same, "n": n, "share": share,
                                "max_identical": max_identical}
    if (same == n) if max_identical is None else share > max_identical:
        return finding("B001", f"base and adapter outputs identical on {same}/{n} titles",
                       hint="check the adapter (ftdiag check-adapter) and the training logs",
                       **evidence)
    return passed("B001", f"outputs differ on {n - same}/{n} titles", **evidence)


def _runaway_check(summary: AbSummary, max_new: int) -> Finding:
    shares = {a: v for a, v in summary.hit_max_share.items() if a != "base"}
    worst = max(shares.values(), default=0.0)
    if worst >= RUNAWAY_SHARE:
        return finding("B003", f"{worst:.0%} of fine-tuned outputs hit max_new_tokens={max_new} "
                       "without EOS", hint="check that EOS was trained (D003) and pad != eos "
                       "(R009)", hit_max_share=summary.hit_max_share)
    return passed("B003", f"at most {worst:.0%} of fine-tuned outputs hit max_new_tokens",
                  hit_max_share=summary.hit_max_share)


def _batch_check(rows: list[ABRow], prompts: list[str], arms: list[Arm], tokenizer: Any,
                 s: GenSettings, outputs: dict[str, list[ArmOutput]]) -> Finding:
    """B004: the shortest prompt (most padding in its batch) re-run alone under each arm."""
    i = min(range(len(prompts)), key=lambda k: len(prompts[k]))
    differ = []
    for arm in arms:
        alone = generate_one(tokenizer, prompts[i], arm, s)
        if alone.ids != outputs[arm.name][i].ids:
            differ.append(arm.name)
    if differ:
        return finding("B004", f"title {i + 1} alone differs from its batched output "
                       f"({', '.join(differ)})", hint="use left padding with attention masks",
                       title=rows[i].title, arms=differ)
    return passed("B004", f"title {i + 1} alone matches its batched output on every arm",
                  title=rows[i].title)


def _merged_check(adapter: Arm, merged: Arm, prompts: list[str], tokenizer: Any,
                  rows: list[ABRow]) -> Finding:
    """B002: merged vs base+adapter logits on the prompts, and where their texts part."""
    import torch

    half = next(merged.model.parameters()).dtype != torch.float32
    gap = logit_gap(prompt_logits(adapter, tokenizer, prompts),
                    prompt_logits(merged, tokenizer, prompts),
                    atol=5e-2 if half else 1e-3, rtol=1e-2 if half else 1e-4)
    differ = [i for i, r in enumerate(rows) if r.merged_first_divergent_token is not None]
    first = min((rows[i].merged_first_divergent_token or 0 for i in differ), default=None)
    return merged_gap_finding(gap, "merged", f"; texts differ on {len(differ)}/{len(rows)}",
                              hint="re-merge in fp32 with ftdiag merge",
                              texts_differ=len(differ), first_divergent_token=first)
