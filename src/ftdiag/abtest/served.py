"""Is what the server answers the thing we trained? Served base/adapter vs local pair (E001-E005).

The prompts are the local ab-test's (the recorded training template, titles cut to fit); with an
adapter folder the local base and PEFT adapter outputs for the same prompts are the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftdiag.abtest.client import EndpointConfig, Served, fetch
from ftdiag.abtest.runtimes import ServedPlan, detect, plan_arms
from ftdiag.abtest.served_checks import (
    LOCAL_ADAPTER,
    LOCAL_BASE,
    SERVED_ADAPTER,
    SERVED_BASE,
    base_check,
    contamination_check,
    drift_check,
    identical_check,
    name_check,
    unservable,
)
from ftdiag.errors import FtdiagError
from ftdiag.findings import Details, Finding, Report
from ftdiag.generation.metrics import first_divergence, mean
from ftdiag.progress import ProgressFn
from ftdiag.prompts.records import Record
from ftdiag.prompts.template import SYSTEM_PROMPT, PromptTemplate


@dataclass
class EndpointSpec:
    """What to ask the server and what to compare it with."""

    endpoint: EndpointConfig
    served_base: str | None = None  # None: from the runtime detected
    served_adapter: str | None = None
    adapter_dir: Path | str | None = None  # local reference (base + PEFT adapter) when given
    base: str | None = None
    template: PromptTemplate | None = None  # None: recorded (with --adapter) or default
    batch_size: int = 8
    max_identical: float | None = None  # E001 when the identical share exceeds this


@dataclass
class EndpointRow:
    """One title: the prompt sent and every arm's text (None where a request failed)."""

    title: str
    prompt: str
    outputs: dict[str, str | None]
    served_identical: bool
    served_drift_token: int | None = None  # served adapter vs local adapter, first differing token
    matches: str = ""  # what the served adapter reproduces: adapter | base | served-base | other
    uid: str | None = None


@dataclass
class EndpointSummary:
    """Counts the E checks read, and how the server was asked."""

    url: str
    served_base: str
    served_adapter: str
    route: str  # /v1/completions | /v1/chat/completions
    n: int = 0
    served_identical: int = 0
    informative: int = 0  # titles where the local base and adapter differ
    matches_local_base: int = 0
    matches_local_adapter: int = 0
    drift_titles: int = 0
    base_drift_titles: int = 0  # served base vs local base
    first_drift_token: dict[str, float | int | None] = field(default_factory=dict)
    listed_models: list[str] | None = None
    local_reference: bool = False
    completion_tokens: dict[str, int] = field(default_factory=dict)  # per served arm (usage)
    runtime: str = ""  # the server detected: llama.cpp | vllm | ollama | tgi | transformers serve
    runtime_evidence: str = ""  # which of its answers identified it
    runtime_version: str | None = None
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)  # arm -> model + fields
    base_matches_local_adapter: int = 0  # informative titles where served base = local adapter
    base_matches_local_base: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class EndpointDetails(Details):
    """ab-test --endpoint's report details: the summary and one row per title."""

    endpoint: EndpointSummary
    rows: list[EndpointRow]


@dataclass
class LocalReference:
    """The local ab-test on the same titles: its checks, prompts, base/adapter texts, tokenizer."""

    report: Report
    prompts: list[str]
    texts: dict[str, list[str]]
    tokenizer: Any = None


@dataclass
class EndpointResult:
    """The report (command 'ab-test'), per-title rows and the summary."""

    report: Report
    rows: list[EndpointRow] = field(default_factory=list)
    summary: EndpointSummary | None = None
    reference: LocalReference | None = field(default=None, repr=False)  # reusable, not reported


def chat_messages(title: str) -> list[dict[str, str]]:
    """The training chat turn for a title (the server applies its own chat template)."""
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Title: {title}"}]


def local_reference(spec: EndpointSpec, records: list[Record],
                    progress: ProgressFn | None = None) -> LocalReference:
    """Local ab-test on the same titles (one weight copy): the reference the server must match."""
    from ftdiag.abtest.local import ABConfig, run_ab_test
    from ftdiag.adapters.preflight import resolve_base
    from ftdiag.model.load import load_tokenizer

    assert spec.adapter_dir is not None
    cfg = ABConfig(adapter_dir=spec.adapter_dir, base=spec.base, template=spec.template,
                   max_new_tokens=spec.endpoint.max_tokens, batch_size=spec.batch_size,
                   seed=spec.endpoint.seed)
    ab = run_ab_test(cfg, records, progress=progress)
    texts = {arm: [r.outputs[arm] for r in ab.rows] for arm in (LOCAL_BASE, LOCAL_ADAPTER)}
    tokenizer = load_tokenizer(resolve_base(cfg.adapter_dir, cfg.base)) if ab.rows else None
    return LocalReference(ab.report, [r.prompt for r in ab.rows], texts, tokenizer)


def run_endpoint_test(spec: EndpointSpec, records: list[Record], *,
                      stage: Callable[[str], None] | None = None,
                      progress: ProgressFn | None = None,
                      reference: LocalReference | None = None) -> EndpointResult:
    """Local reference (with an adapter), then every prompt to the served base and adapter.

    reference: a LocalReference computed earlier for the same spec and titles (reused as is).
    """
    records = [r for r in records if r.title.strip()]
    if not records:
        raise FtdiagError("no titles to test (all empty)")
    cfg = spec.endpoint
    if (spec.served_base is not None and spec.served_base == spec.served_adapter
            and cfg.request_extra is not None and cfg.request_extra == cfg.base_request_extra):
        raise FtdiagError("--served-base and --served-adapter ask for the same thing",
                          hint="give two model names, or select the adapter by --request-extra "
                          "(and the base by --base-request-extra)")
    import importlib.util

    if importlib.util.find_spec("openai") is None:
        raise FtdiagError("ab-test --endpoint needs the openai client",
                          hint="pip install 'ftdiag[serve]'")
    if stage:
        stage(f"which server answers at {cfg.url}")
    facts = detect(cfg.url, timeout=cfg.timeout, api_key=cfg.api_key)
    plan = plan_arms(facts, served_base=spec.served_base, served_adapter=spec.served_adapter,
                     request_extra=cfg.request_extra, base_request_extra=cfg.base_request_extra)
    if plan.base.model == plan.adapter.model and plan.base.extra == plan.adapter.extra:
        raise FtdiagError(f"the base and adapter arms would send the same request to "
                          f"{facts.runtime} ({plan.base.model}, {plan.base.extra})",
                          hint="select the adapter by --served-adapter or --request-extra")
    report = Report("ab-test")
    local: dict[str, list[str]] = {}
    tokenizer = None
    template = spec.template or PromptTemplate()
    prompts = [template.render(r.title) for r in records] if not template.is_chat else []
    if spec.adapter_dir is not None and reference is None:
        if stage:
            stage(f"local base and adapter on {len(records)} titles")
        reference = local_reference(spec, records, progress)
    if reference is not None:
        report.add(*reference.report.checks)
        report.layers_run += reference.report.layers_run
        report.layers_skipped.update(reference.report.layers_skipped)
        if reference.prompts:
            prompts, local, tokenizer = reference.prompts, reference.texts, reference.tokenizer
        # else the static gate stopped the local run: the server is still asked
    chat = spec.endpoint.chat
    sent: list[Any] = [chat_messages(r.title) for r in records] if chat else prompts
    if not sent:
        raise FtdiagError("the tokenizer's chat template needs --adapter (or use --chat)")
    if stage:
        stage(f"served {plan.base.model} and {plan.adapter.model} ({facts.runtime})")
    route = "/v1/chat/completions" if chat else "/v1/completions"
    summary = EndpointSummary(spec.endpoint.url, plan.base.model, plan.adapter.model, route,
                              n=len(records), local_reference=bool(local),
                              runtime=facts.runtime, runtime_evidence=facts.evidence,
                              runtime_version=facts.version, notes=list(plan.notes),
                              requests={SERVED_BASE: _request(plan, SERVED_BASE),
                                        SERVED_ADAPTER: _request(plan, SERVED_ADAPTER)})
    report.layers_run.append("E")
    unlisted = unservable(facts, plan)
    if unlisted:  # it would block on a download: do not send it
        report.details = EndpointDetails(summary, [])
        summary.listed_models = facts.models
        report.add(*unlisted)
        report.add(*(Finding(code, "skip", "requests cannot be answered (E003)")
                     for code in ("E001", "E002", "E004", "E005")))
        return EndpointResult(report, [], summary, reference)
    arms = {SERVED_BASE: (plan.base.model, plan.base.extra),
            SERVED_ADAPTER: (plan.adapter.model, plan.adapter.extra)}
    served, listed = fetch(cfg, arms, sent, progress)
    summary.listed_models = listed
    summary.completion_tokens = {arm: sum(t or 0 for t in s.tokens) for arm, s in served.items()}
    rows = _rows(records, sent, served, local, tokenizer)
    report.details = EndpointDetails(summary, rows)
    missing = [name_check(served[arm], listed, facts) for arm in (SERVED_BASE, SERVED_ADAPTER)]
    report.add(*missing)
    if any(c.status == "fail" for c in missing):
        why = "requests failed (E003)"
        report.add(*(Finding(code, "skip", why) for code in ("E001", "E002", "E004", "E005")))
        return EndpointResult(report, rows, summary, reference)
    _count(summary, rows, local)
    e001 = identical_check(summary, spec)
    e002 = base_check(summary, rows, local)
    e005 = contamination_check(summary, facts, plan, local)
    if e001.status == "fail" and e005.status == "fail":  # the base arm is the cause
        e001.hint = "the served base arm carries the adapter (E005): " + e005.hint
    report.add(e001, e002, drift_check(summary, rows, local, e002), e005)
    return EndpointResult(report, rows, summary, reference)


def _request(plan: ServedPlan, arm: str) -> dict[str, Any]:
    """What one arm sends besides the prompt: the model name and the extra body fields."""
    req = plan.base if arm == SERVED_BASE else plan.adapter
    return {"model": req.model, **req.extra, "chosen_by": req.chosen_by}






def _tokens(text: str, tokenizer: Any) -> list[Any]:
    if tokenizer is None:
        return text.split()
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _rows(records: list[Record], sent: list[Any], served: dict[str, Served],
          local: dict[str, list[str]], tokenizer: Any) -> list[EndpointRow]:
    rows = []
    for i, rec in enumerate(records):
        sb, sa = served[SERVED_BASE].texts[i], served[SERVED_ADAPTER].texts[i]
        outputs: dict[str, str | None] = {SERVED_BASE: sb, SERVED_ADAPTER: sa}
        outputs.update({arm: texts[i] for arm, texts in local.items()})
        prompt = sent[i] if isinstance(sent[i], str) else sent[i][-1]["content"]
        row = EndpointRow(rec.title, prompt, outputs, sb is not None and sb == sa, uid=rec.uid)
        if sa is not None and local:
            la, lb = local[LOCAL_ADAPTER][i], local[LOCAL_BASE][i]
            row.served_drift_token = first_divergence(_tokens(la, tokenizer),
                                                      _tokens(sa, tokenizer))
            row.matches = ("adapter" if sa == la else "base" if sa == lb else
                           SERVED_BASE if row.served_identical else "other")
        elif sa is not None:
            row.matches = SERVED_BASE if row.served_identical else "other"
        rows.append(row)
    return rows


def _count(s: EndpointSummary, rows: list[EndpointRow], local: dict[str, list[str]]) -> None:
    s.served_identical = sum(r.served_identical for r in rows)
    if not local:
        return
    informative = [i for i in range(len(rows))
                   if local[LOCAL_BASE][i] != local[LOCAL_ADAPTER][i]]
    s.informative = len(informative)
    s.matches_local_base = sum(rows[i].outputs[SERVED_ADAPTER] == local[LOCAL_BASE][i]
                               for i in informative)
    s.matches_local_adapter = sum(r.outputs[SERVED_ADAPTER] == r.outputs[LOCAL_ADAPTER]
                                  for r in rows)
    drift = [r.served_drift_token for r in rows if r.served_drift_token is not None]
    s.drift_titles = len(drift)
    s.base_drift_titles = sum(r.outputs[SERVED_BASE] != r.outputs[LOCAL_BASE] for r in rows)
    s.base_matches_local_adapter = sum(rows[i].outputs[SERVED_BASE] == local[LOCAL_ADAPTER][i]
                                       for i in informative)
    s.base_matches_local_base = sum(rows[i].outputs[SERVED_BASE] == local[LOCAL_BASE][i]
                                    for i in informative)
    s.first_drift_token = {"mean": mean([float(d) for d in drift]), "min": min(drift, default=None)}













