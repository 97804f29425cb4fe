"""The E checks of ab-test --endpoint: E001-E005 from the counted rows and the server's facts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftdiag.abtest.client import Served
from ftdiag.abtest.runtimes import LLAMA_CPP, TRANSFORMERS, VLLM, ServedPlan, ServerFacts
from ftdiag.findings import Finding, finding, passed

if TYPE_CHECKING:
    from ftdiag.abtest.served import EndpointRow, EndpointSpec, EndpointSummary

SERVED_BASE, SERVED_ADAPTER = "served-base", "served-adapter"
LOCAL_BASE, LOCAL_ADAPTER = "base", "adapter"  # the local ab-test's arm names


def looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).exists()


def unservable(facts: ServerFacts, plan: ServedPlan) -> list[Finding]:
    """E003 before sending: a name transformers serve neither lists nor can load offline.

    transformers serve lists the models of its Hub cache and the ones it loaded; asked for
    another Hub id it tries to download it, and blocks every request while it retries.
    """
    if facts.runtime != TRANSFORMERS or not facts.models:
        return []
    out = []
    for arm, req in ((SERVED_BASE, plan.base), (SERVED_ADAPTER, plan.adapter)):
        if req.model not in facts.models and not looks_like_path(req.model):
            out.append(finding("E003", f"'{req.model}' ({arm}) is not among the models "
                               f"transformers serve lists ({', '.join(facts.models[:8])}) and "
                               "is not a folder: the server would try to download it",
                               hint="serve a listed name or a local folder path",
                               model=req.model, listed=facts.models))
    return out


def name_check(served: Served, listed: list[str] | None, facts: ServerFacts) -> Finding:
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


def identical_check(s: EndpointSummary, spec: EndpointSpec) -> Finding:
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


def base_check(s: EndpointSummary, rows: list[EndpointRow],
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


def drift_check(s: EndpointSummary, rows: list[EndpointRow], local: dict[str, list[str]],
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


def contamination_check(s: EndpointSummary, facts: ServerFacts, plan: ServedPlan,
                         local: dict[str, list[str]]) -> Finding:
    """E005: the served base arm carries the adapter (server state, or its texts)."""
    said = base_arm_state(facts, plan)
    evidence: dict[str, Any] = {"runtime": facts.runtime, "base_request": s.requests[SERVED_BASE],
                                "base_matches_local_adapter": s.base_matches_local_adapter,
                                "base_matches_local_base": s.base_matches_local_base,
                                "informative": s.informative}
    hint = clean_base_hint(facts)
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


def base_arm_state(facts: ServerFacts, plan: ServedPlan) -> str:
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


def clean_base_hint(facts: ServerFacts) -> str:
    if facts.runtime == LLAMA_CPP:
        zero = [{"id": s.id, "scale": 0} for s in facts.loras] or [{"id": 0, "scale": 0}]
        return (f"send the base arm's requests with \"lora\": {json.dumps(zero)} (ftdiag does "
                "when --base-request-extra is not given)")
    if facts.runtime == VLLM:
        return "request the base model's own name (the /v1/models entry without a parent)"
    return ("the base name must serve the base model without the adapter: serve the base "
            "separately, or select the adapter per request")
