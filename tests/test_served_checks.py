"""The E checks of ab-test --endpoint on answers of known content: each branch, counts pinned."""

from __future__ import annotations

from ftdiag.abtest.client import Served
from ftdiag.abtest.runtimes import LLAMA_CPP, VLLM, ServerFacts
from ftdiag.abtest.served import EndpointSummary, _count, _rows
from ftdiag.abtest.served_checks import (
    LOCAL_ADAPTER,
    LOCAL_BASE,
    SERVED_ADAPTER,
    SERVED_BASE,
    base_check,
    drift_check,
    name_check,
)
from ftdiag.prompts.records import Record

VLLM_FACTS = ServerFacts(VLLM, "GET /version")
TITLES = ["Mug", "Lamp", "Desk", "Chair"]
LOCAL = {LOCAL_BASE: ["plain mug", "plain lamp", "plain desk", "plain chair"],
         LOCAL_ADAPTER: ["a fine mug", "a fine lamp", "a fine desk", "a fine chair"]}


def served(name: str, texts: list[str]) -> Served:
    return Served(name, list(texts), ["stop"] * len(texts))


def test_a_name_the_server_does_not_list_is_e003() -> None:
    """vLLM answers an unknown name with its default model, so an unlisted name is a fault."""
    e003 = name_check(served("tuned", ["x"]), ["base-model"], VLLM_FACTS)
    assert e003.status == "fail" and "not listed by /v1/models" in e003.message
    assert e003.evidence["listed"] == ["base-model"]
    assert name_check(served("tuned", ["x"]), ["base-model", "tuned"], VLLM_FACTS).status \
        == "pass"


def test_an_unlisted_name_is_fine_where_one_model_answers_every_name() -> None:
    e003 = name_check(served("tuned", ["x"]), ["base-model"], ServerFacts(LLAMA_CPP, "/props"))
    assert e003.status == "pass" and "serves one model whatever the name" in e003.message


def test_a_failing_request_is_e003_with_the_servers_error() -> None:
    failed = Served("tuned", [None], [None], error="404 model not found")
    e003 = name_check(failed, None, VLLM_FACTS)
    assert e003.status == "fail" and e003.evidence["error"] == "404 model not found"


def test_one_drifted_title_of_four_is_e004_counted_alone() -> None:
    """The served adapter equals the local adapter on three titles; on 'Desk' it departs at its
    second word: E004 warns on 1/4 titles, first at token 1 (whitespace tokens)."""
    adapter = [*LOCAL[LOCAL_ADAPTER][:2], "a worn desk", LOCAL[LOCAL_ADAPTER][3]]
    answers = {SERVED_BASE: served("base", LOCAL[LOCAL_BASE]),
               SERVED_ADAPTER: served("tuned", adapter)}
    rows = _rows([Record(t) for t in TITLES], TITLES, answers, LOCAL, None)
    summary = EndpointSummary("http://x/v1", "base", "tuned", "/v1/completions", n=4)
    _count(summary, rows, LOCAL)
    e002 = base_check(summary, rows, LOCAL)
    assert e002.status == "pass"  # it is not the base: 0/4 titles match the base
    e004 = drift_check(summary, rows, LOCAL, e002)
    assert e004.status == "warn" and "on 1/4 titles" in e004.message and "(title 3)" in e004.message
    assert (e004.evidence["titles"], e004.evidence["n"]) == (1, 4)
    assert e004.evidence["first_divergent_token"]["min"] == 1
    assert [r.matches for r in rows] == ["adapter", "adapter", "other", "adapter"]


def test_no_drifted_title_is_e004_pass() -> None:
    answers = {SERVED_BASE: served("base", LOCAL[LOCAL_BASE]),
               SERVED_ADAPTER: served("tuned", LOCAL[LOCAL_ADAPTER])}
    rows = _rows([Record(t) for t in TITLES], TITLES, answers, LOCAL, None)
    summary = EndpointSummary("http://x/v1", "base", "tuned", "/v1/completions", n=4)
    _count(summary, rows, LOCAL)
    e004 = drift_check(summary, rows, LOCAL, base_check(summary, rows, LOCAL))
    assert e004.status == "pass" and summary.drift_titles == 0
