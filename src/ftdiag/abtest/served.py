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
from ftdiag.abtest.runtimes import (
    LLAMA_CPP,
    TRANSFORMERS,
    VLLM,
    ServedPlan,
    ServerFacts,
    detect,
    plan_arms,
)
from ftdiag.errors import FtdiagError
from ftdiag.findings import Details, Finding, Report, finding, passed
from ftdiag.generation.metrics import first_divergence, mean
from ftdiag.progress import ProgressFn
from ftdiag.prompts.records import Record
from ftdiag.prompts.template import SYSTEM_PROMPT, PromptTemplate

SERVED_BASE, SERVED_ADAPTER = "served-base", "served-adapter"
LOCAL_BASE, LOCAL_ADAPTER = "base", "adapter"  # the local ab-test's arm names


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
    unlisted = _unservable(facts, plan)
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
    missing = [_name_check(served[arm], listed, facts) for arm in (SERVED_BASE, SERVED_ADAPTER)]
    report.add(*missing)
    if any(c.status == "fail" for c in missing):
        why = "requests failed (E003)"
        report.add(*(Finding(code, "skip", why) for code in ("E001", "E002", "E004", "E005")))
        return EndpointResult(report, rows, summary, reference)
    _count(summary, rows, local)
    report.add(_identical_check(summary, spec))
    e002 = _base_check(summary, rows, local)
    report.add(e002, _drift_check(summary, rows, local, e002))
    report.add(_contamination_check(summary, facts, plan, local))
    return EndpointResult(report, rows, summary, reference)


def _request(plan: ServedPlan, arm: str) -> dict[str, Any]:
    """What one arm sends besides the prompt: the model name and the extra body fields."""
    req = plan.base if arm == SERVED_BASE else plan.adapter
    return {"model": req.model, **req.extra, "chosen_by": req.chosen_by}


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).exists()


def _unservable(facts: ServerFacts, plan: ServedPlan) -> list[Finding]:
    """E003 before sending: a name transformers serve neither lists nor can load offline.

    transformers serve lists the models of its Hub cache and the ones it loaded; asked for
    another Hub id it tries to download it, and blocks every request while it retries.
    """
    if facts.runtime != TRANSFORMERS or not facts.models:
        return []
    out = []
    for arm, req in ((SERVED_BASE, plan.base), (SERVED_ADAPTER, plan.adapter)):
        if req.model not in facts.models and not _looks_like_path(req.model):
            out.append(finding("E003", f"'{req.model}' ({arm}) is not among the models "
                               f"transformers serve lists ({', '.join(facts.models[:8])}) and "
                               "is not a folder: the server would try to download it",
                               hint="serve a listed name or a local folder path",
                               model=req.model, listed=facts.models))
    return out


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


def _name_check(served: Served, listed: list[str] | None, facts: ServerFacts) -> Finding:
    """E003: requests for the name fail, or a server that routes by name does not list it."""
    name = served.name
    if served.error is not None:
        return finding("E003", f"requests for '{name}' fail: {served.error}",
                       hint="use a name the server serves (GET /v1/models); vLLM: "
                       "--lora-modules NAME=PATH", model=name, error=served.error,
                       listed=listed)
    if facts.single_model:
        return passed("E003", f"'{name}' answers: {facts.runtime} serves one model whatever "
                      "the name", model=name, listed=listed)
    if listed and name not in listed:
        return finding("E003", f"'{name}' is not listed by /v1/models (lists: "
                       f"{', '.join(listed[:8])}): the server may answer any name with its "
                       "default model", hint="request a listed name, or load the adapter under "
                       "this name", model=name, listed=listed)
    how = "listed by /v1/models" if listed else "answers (the server lists no models)"
    return passed("E003", f"'{name}' {how}", model=name, listed=listed)


def _identical_check(s: EndpointSummary, spec: EndpointSpec) -> Finding:
    n, same = s.n, s.served_identical
    share = same / n if n else 0.0
    evidence: dict[str, Any] = {"identical": same, "n": n, "share": share,
                                "max_identical": spec.max_identical}
    limit = spec.max_identical
    if (same == n) if limit is None else share > limit:
        return finding("E001", f"served '{s.served_adapter}' answers exactly as served "
                       f"'{s.served_base}' on {same}/{n} titles",
                       hint="the request does not select the adapter: check the model name or "
                       "--request-extra (lora / adapter_id)", **evidence)
    return passed("E001", f"served adapter and base differ on {n - same}/{n} titles", **evidence)


def _base_check(s: EndpointSummary, rows: list[EndpointRow],
                local: dict[str, list[str]]) -> Finding:
    """E002: on titles where the local pair differs, the served adapter gives the local base."""
    if not local:
        return Finding("E002", "skip", "no local reference (pass --adapter DIR)")
    k = s.informative
    if k == 0:
        return Finding("E002", "skip", "the local base and adapter agree on every title: "
                       "nothing tells them apart")
    base, adapter = s.matches_local_base, sum(r.matches == "adapter" for r in rows
                                              if r.outputs[LOCAL_BASE] != r.outputs[LOCAL_ADAPTER])
    evidence: dict[str, Any] = {"informative": k, "matches_local_base": base,
                                "matches_local_adapter": adapter}
    if base > adapter and 2 * base >= k:
        return finding("E002", f"served '{s.served_adapter}' reproduces the local base on "
                       f"{base}/{k} titles where base and adapter differ (the adapter on "
                       f"{adapter})", hint="the request never selected the adapter: wrong model "
                       "name, adapter not loaded, or an unknown adapter id silently ignored",
                       **evidence)
    return passed("E002", f"served adapter is not the local base ({base}/{k} titles match the "
                  "base)", **evidence)


def _drift_check(s: EndpointSummary, rows: list[EndpointRow], local: dict[str, list[str]],
                 e002: Finding) -> Finding:
    """E004: the served adapter departs from the local adapter without being the base."""
    if not local:
        return Finding("E004", "skip", "no local reference (pass --adapter DIR)")
    if e002.status == "fail":
        return Finding("E004", "skip", "the served adapter is the base (E002)")
    n, k = s.n, s.drift_titles
    if k == 0:
        return passed("E004", f"served adapter reproduces the local adapter on {n}/{n} titles")
    first = min((i for i, r in enumerate(rows) if r.served_drift_token is not None),
                key=lambda i: rows[i].served_drift_token or 0)
    base_note = (f"; the served base departs from the local base on {s.base_drift_titles}/{n} "
                 "too (template, stop tokens or the server's decoding)"
                 if s.base_drift_titles else "")
    return finding("E004", f"served adapter departs from the local adapter on {k}/{n} titles "
                   f"({k / n:.0%}), first at token {s.first_drift_token['min']} "
                   f"(title {first + 1}){base_note}",
                   hint="compare template, stop tokens, and the export's precision or "
                   "quantization (ftdiag check-export)", titles=k, n=n, share=k / n,
                   first_divergent_token=s.first_drift_token, base_drift_titles=s.base_drift_titles,
                   example=rows[first].title)


def _contamination_check(s: EndpointSummary, facts: ServerFacts, plan: ServedPlan,
                         local: dict[str, list[str]]) -> Finding:
    """E005: the served base arm carries the adapter (server state, or its texts)."""
    said = _base_arm_state(facts, plan)
    evidence: dict[str, Any] = {"runtime": facts.runtime, "base_request": s.requests[SERVED_BASE],
                                "base_matches_local_adapter": s.base_matches_local_adapter,
                                "base_matches_local_base": s.base_matches_local_base,
                                "informative": s.informative}
    hint = _clean_base_hint(facts)
    if said:
        return finding("E005", said, hint=hint, **evidence)
    k, ad, ba = s.informative, s.base_matches_local_adapter, s.base_matches_local_base
    if local and k and ad > ba and 2 * ad >= k:
        return finding("E005", f"served base '{s.served_base}' reproduces the local adapter on "
                       f"{ad}/{k} titles where base and adapter differ (the local base on {ba}): "
                       "the base arm carries the adapter", hint=hint, **evidence)
    if not local:
        return passed("E005", "the server applies no adapter to the base arm's requests",
                      **evidence) if facts.runtime in (LLAMA_CPP, VLLM) else Finding(
            "E005", "skip", "no local reference (pass --adapter DIR)")
    if not k:
        return Finding("E005", "skip", "the local base and adapter agree on every title: "
                       "nothing tells them apart")
    return passed("E005", f"served base is not the local adapter ({ad}/{k} titles match the "
                  "adapter)", **evidence)


def _base_arm_state(facts: ServerFacts, plan: ServedPlan) -> str:
    """What the server itself says about the base arm's requests ('' when it says nothing bad)."""
    if facts.runtime == LLAMA_CPP:
        sent = {int(e["id"]): float(e.get("scale", 1.0)) for e in plan.base.extra.get("lora", [])
                if isinstance(e, dict) and "id" in e}
        live = [s for s in facts.loras if s.scale != 0 and sent.get(s.id, s.scale) != 0]
        if live:
            return (f"llama-server applies LoRA id {live[0].id} ({live[0].path}) at its global "
                    f"scale {live[0].scale:g} to requests that do not set it, and the base arm "
                    f"sends {plan.base.extra or 'no lora field'}")
    if facts.runtime == VLLM and facts.parents.get(plan.base.model):
        return (f"'{plan.base.model}' is a LoRA module on vLLM (parent "
                f"{facts.parents[plan.base.model]}), not a base model")
    return ""


def _clean_base_hint(facts: ServerFacts) -> str:
    if facts.runtime == LLAMA_CPP:
        zero = [{"id": s.id, "scale": 0} for s in facts.loras] or [{"id": 0, "scale": 0}]
        import json

        return (f"send the base arm's requests with \"lora\": {json.dumps(zero)} (ftdiag does "
                "when --base-request-extra is not given)")
    if facts.runtime == VLLM:
        return "request the base model's own name (the /v1/models entry without a parent)"
    return ("the base name must serve the base model without the adapter: serve the base "
            "separately, or select the adapter per request")
