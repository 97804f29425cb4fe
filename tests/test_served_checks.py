"""The E checks of ab-test --endpoint on answers of known content: each branch, counts pinned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ftdiag.abtest.client import EndpointConfig, Served
from ftdiag.abtest.runtimes import (
    LLAMA_CPP,
    TRANSFORMERS,
    VLLM,
    ArmRequest,
    LoraSlot,
    ServedPlan,
    ServerFacts,
)
from ftdiag.abtest.served import EndpointRow, EndpointSpec, EndpointSummary, _count, _rows
from ftdiag.abtest.served_checks import (
    LOCAL_ADAPTER,
    LOCAL_BASE,
    SERVED_ADAPTER,
    SERVED_BASE,
    base_arm_state,
    base_check,
    clean_base_hint,
    contamination_check,
    drift_check,
    identical_check,
    looks_like_path,
    name_check,
    unservable,
)
from ftdiag.findings import Finding, passed
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


# --- every branch pinned: status, message, hint and evidence (issue 26's mutation score) ---

NINE = [f"m{i}" for i in range(9)]  # a listing longer than the eight names a message shows
SHOWN = "m0, m1, m2, m3, m4, m5, m6, m7"


def summary(**counts: Any) -> EndpointSummary:
    return EndpointSummary("http://x/v1", "base", "tuned", "/v1/completions", **counts)


def row(matches: str, *, differs: bool = True, drift: int | None = None,
        title: str = "t") -> EndpointRow:
    """One title whose local base and adapter differ (or not), the served adapter matching."""
    local = {LOCAL_BASE: "plain", LOCAL_ADAPTER: "fine" if differs else "plain"}
    return EndpointRow(title, title, local, False, served_drift_token=drift, matches=matches)


def plan(base: str = "base", adapter: str = "tuned",
         base_extra: dict[str, Any] | None = None) -> ServedPlan:
    return ServedPlan(ArmRequest(base, base_extra or {}), ArmRequest(adapter))


def spec(max_identical: float | None = None) -> EndpointSpec:
    return EndpointSpec(EndpointConfig("http://x/v1"), max_identical=max_identical)


@pytest.mark.parametrize("name", ["/models/m", "./m", "../m", "~/m"])
def test_names_that_start_like_a_path_look_like_a_path(name: str) -> None:
    assert looks_like_path(name)


def test_a_hub_id_is_not_a_path_unless_a_folder_of_that_name_exists(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert not looks_like_path("org/model")
    (tmp_path / "org" / "model").mkdir(parents=True)
    assert looks_like_path("org/model")


def test_transformers_serve_flags_each_arm_it_neither_lists_nor_finds_on_disk() -> None:
    facts = ServerFacts(TRANSFORMERS, "GET /v1/models", models=NINE)
    (e003,) = unservable(facts, plan(base="m8", adapter="org/tuned"))
    assert e003 == Finding(
        "E003", "fail", f"'org/tuned' (served-adapter) is not among the models transformers "
        f"serve lists ({SHOWN}) and is not a folder: the server would try to download it",
        "serve a listed name or a local folder path", {"model": "org/tuned", "listed": NINE})
    both = unservable(facts, plan(base="org/base", adapter="./tuned-dir"))
    assert [f.evidence["model"] for f in both] == ["org/base"]
    assert "(served-base)" in both[0].message
    assert len(unservable(facts, plan(base="org/a", adapter="org/b"))) == 2


def test_unservable_says_nothing_for_other_runtimes_or_an_empty_listing() -> None:
    assert unservable(ServerFacts(VLLM, "v", models=["a"]), plan("x", "y")) == []
    assert unservable(ServerFacts(TRANSFORMERS, "v", models=[]), plan("x", "y")) == []
    assert unservable(ServerFacts(TRANSFORMERS, "v"), plan("x", "y")) == []


def test_e003_for_a_failing_request_pins_message_hint_and_evidence() -> None:
    failed = Served("tuned", [None], [None], error="404 model not found")
    assert name_check(failed, ["a"], VLLM_FACTS) == Finding(
        "E003", "fail", "requests for 'tuned' fail: 404 model not found",
        "use a name the server serves (GET /v1/models); vLLM: --lora-modules NAME=PATH",
        {"model": "tuned", "error": "404 model not found", "listed": ["a"]})


def test_e003_for_an_unlisted_name_shows_eight_listed_names() -> None:
    assert name_check(served("tuned", ["x"]), NINE, VLLM_FACTS) == Finding(
        "E003", "fail", f"'tuned' is not listed by /v1/models (lists: {SHOWN}): the server may "
        "answer any name with its default model",
        "request a listed name, or load the adapter under this name",
        {"model": "tuned", "listed": NINE})


def test_e003_passes_pinned_for_one_model_a_listed_name_and_no_listing() -> None:
    one = name_check(served("tuned", ["x"]), ["a"], ServerFacts(LLAMA_CPP, "/props"))
    assert one == Finding("E003", "pass", "'tuned' answers: llama.cpp serves one model whatever "
                          "the name", "", {"model": "tuned", "listed": ["a"]})
    listed = name_check(served("tuned", ["x"]), ["tuned"], VLLM_FACTS)
    assert listed == Finding("E003", "pass", "'tuned' listed by /v1/models", "",
                             {"model": "tuned", "listed": ["tuned"]})
    none: list[str] | None
    for none in (None, []):
        assert name_check(served("tuned", ["x"]), none, VLLM_FACTS).message \
            == "'tuned' answers (the server lists no models)"


def test_e001_without_a_limit_fails_only_when_every_title_is_identical() -> None:
    assert identical_check(summary(n=4, served_identical=4), spec()) == Finding(
        "E001", "fail", "served 'tuned' answers exactly as served 'base' on 4/4 titles",
        "the request does not select the adapter: check the model name or --request-extra "
        "(lora / adapter_id)", {"identical": 4, "n": 4, "share": 1.0, "max_identical": None})
    assert identical_check(summary(n=4, served_identical=3), spec()) == Finding(
        "E001", "pass", "served adapter and base differ on 1/4 titles", "",
        {"identical": 3, "n": 4, "share": 0.75, "max_identical": None})


def test_e001_with_a_limit_fails_just_above_it_and_passes_at_it() -> None:
    assert identical_check(summary(n=4, served_identical=2), spec(0.5)).status == "pass"
    above = identical_check(summary(n=4, served_identical=3), spec(0.5))
    assert above.status == "fail" and above.evidence["max_identical"] == 0.5


def test_e001_on_no_titles_has_share_zero() -> None:
    assert identical_check(summary(n=0), spec(0.5)).evidence["share"] == 0.0
    assert identical_check(summary(n=0), spec(0.5)).status == "pass"


def test_e002_skips_without_a_local_reference_or_informative_titles() -> None:
    assert base_check(summary(n=2), [], {}) == Finding(
        "E002", "skip", "no local reference (pass --adapter DIR)")
    assert base_check(summary(n=2, informative=0), [], LOCAL) == Finding(
        "E002", "skip", "the local base and adapter agree on every title: nothing tells them "
        "apart")


def test_e002_fails_when_half_the_informative_titles_give_the_local_base() -> None:
    rows = [row("base"), row("base"), row("adapter"), row("other"), row("adapter", differs=False)]
    e002 = base_check(summary(n=5, informative=4, matches_local_base=2), rows, LOCAL)
    assert e002 == Finding(
        "E002", "fail", "served 'tuned' reproduces the local base on 2/4 titles where base and "
        "adapter differ (the adapter on 1)", "the request never selected the adapter: wrong "
        "model name, adapter not loaded, or an unknown adapter id silently ignored",
        {"informative": 4, "matches_local_base": 2, "matches_local_adapter": 1})


def test_e002_passes_below_half_or_when_the_adapter_matches_as_often() -> None:
    below = base_check(summary(n=3, informative=3, matches_local_base=1), [row("base")], LOCAL)
    assert below == Finding("E002", "pass", "served adapter is not the local base (1/3 titles "
                            "match the base)", "", {"informative": 3, "matches_local_base": 1,
                                                    "matches_local_adapter": 0})
    tie = base_check(summary(n=4, informative=4, matches_local_base=2),
                     [row("adapter"), row("adapter")], LOCAL)
    assert tie.status == "pass" and tie.evidence["matches_local_adapter"] == 2


def test_e004_skips_without_a_reference_or_when_e002_found_the_base() -> None:
    s = summary(n=2, drift_titles=1)
    assert drift_check(s, [], {}, passed("E002", "x")) == Finding(
        "E004", "skip", "no local reference (pass --adapter DIR)")
    assert drift_check(s, [], LOCAL, Finding("E002", "fail", "x")) == Finding(
        "E004", "skip", "the served adapter is the base (E002)")


def test_e004_passes_pinned_when_nothing_drifts() -> None:
    assert drift_check(summary(n=3), [], LOCAL, passed("E002", "x")) == Finding(
        "E004", "pass", "served adapter reproduces the local adapter on 3/3 titles")


def test_e004_names_the_title_that_drifts_earliest_and_the_base_drift() -> None:
    rows = [row("adapter", title="A"), row("other", drift=5, title="B"),
            row("other", drift=2, title="C"), row("other", drift=2, title="D")]
    first = {"min": 2, "median": 2.0}
    s = summary(n=4, drift_titles=3, base_drift_titles=1, first_drift_token=first)
    assert drift_check(s, rows, LOCAL, passed("E002", "x")) == Finding(
        "E004", "warn", "served adapter departs from the local adapter on 3/4 titles (75%), "
        "first at token 2 (title 3); the served base departs from the local base on 1/4 too "
        "(template, stop tokens or the server's decoding)", "compare template, stop tokens, and "
        "the export's precision or quantization (ftdiag check-export)",
        {"titles": 3, "n": 4, "share": 0.75, "first_divergent_token": first,
         "base_drift_titles": 1, "example": "C"})


def test_e004_drift_at_token_zero_still_names_its_title() -> None:
    rows = [row("other", drift=1, title="A"), row("other", drift=0, title="B")]
    s = summary(n=2, drift_titles=2, first_drift_token={"min": 0})
    e004 = drift_check(s, rows, LOCAL, passed("E002", "x"))
    assert e004.evidence["example"] == "B" and "(title 2)" in e004.message
    assert e004.message.endswith("(title 2)")  # no base note when the base does not drift


BASE_REQUEST = {"model": "base", "lora": [{"id": 0, "scale": 0}]}


def contamination(facts: ServerFacts, local: dict[str, list[str]], p: ServedPlan | None = None,
                  **counts: Any) -> Finding:
    s = summary(requests={SERVED_BASE: BASE_REQUEST}, **counts)
    return contamination_check(s, facts, p or plan(), local)


def _e005_evidence(runtime: str, k: int = 0, ad: int = 0, ba: int = 0) -> dict[str, Any]:
    return {"runtime": runtime, "base_request": BASE_REQUEST, "base_matches_local_adapter": ad,
            "base_matches_local_base": ba, "informative": k}


VLLM_HINT = "request the base model's own name (the /v1/models entry without a parent)"


def test_e005_fails_on_what_vllm_says_the_base_name_is() -> None:
    facts = ServerFacts(VLLM, "v", parents={"base": "org/real-base"})
    assert contamination(facts, LOCAL) == Finding(
        "E005", "fail", "'base' is a LoRA module on vLLM (parent org/real-base), not a base model",
        VLLM_HINT, _e005_evidence(VLLM))


def test_e005_fails_when_the_base_arm_reproduces_the_local_adapter_on_half() -> None:
    e005 = contamination(VLLM_FACTS, LOCAL, informative=4, base_matches_local_adapter=2,
                         base_matches_local_base=1)
    assert e005 == Finding(
        "E005", "fail", "served base 'base' reproduces the local adapter on 2/4 titles where "
        "base and adapter differ (the local base on 1): the base arm carries the adapter",
        VLLM_HINT, _e005_evidence(VLLM, 4, 2, 1))


def test_e005_passes_below_half_and_on_a_tie() -> None:
    below = contamination(VLLM_FACTS, LOCAL, informative=5, base_matches_local_adapter=2)
    assert below == Finding("E005", "pass", "served base is not the local adapter (2/5 titles "
                            "match the adapter)", "", _e005_evidence(VLLM, 5, 2))
    tie = contamination(VLLM_FACTS, LOCAL, informative=4, base_matches_local_adapter=2,
                        base_matches_local_base=2)
    assert tie.status == "pass"


def test_e005_without_a_reference_passes_where_the_server_says_and_skips_elsewhere() -> None:
    assert contamination(VLLM_FACTS, {}, informative=4, base_matches_local_adapter=4) == Finding(
        "E005", "pass", "the server applies no adapter to the base arm's requests", "",
        _e005_evidence(VLLM, 4, 4))
    assert contamination(ServerFacts(LLAMA_CPP, "p"), {}).status == "pass"
    assert contamination(ServerFacts(TRANSFORMERS, "p"), {}) == Finding(
        "E005", "skip", "no local reference (pass --adapter DIR)")


def test_e005_skips_when_the_local_pair_agrees_everywhere() -> None:
    assert contamination(VLLM_FACTS, LOCAL, informative=0) == Finding(
        "E005", "skip", "the local base and adapter agree on every title: nothing tells them "
        "apart")


def test_llama_server_applies_a_global_lora_the_base_arm_does_not_zero() -> None:
    facts = ServerFacts(LLAMA_CPP, "p", loras=[LoraSlot(0, "a.gguf", 0.0),
                                               LoraSlot(1, "b.gguf", 0.5)])
    assert base_arm_state(facts, plan()) == ("llama-server applies LoRA id 1 (b.gguf) at its "
                                             "global scale 0.5 to requests that do not set it, "
                                             "and the base arm sends no lora field")
    sent = {"lora": [{"id": 0, "scale": 1}]}
    assert base_arm_state(facts, plan(base_extra=sent)).endswith(f"sends {sent}")


def test_llama_server_base_arm_is_clean_when_it_sends_scale_zero() -> None:
    facts = ServerFacts(LLAMA_CPP, "p", loras=[LoraSlot(3, "a.gguf", 1.0)])
    assert base_arm_state(facts, plan(base_extra={"lora": [{"id": 3, "scale": 0}]})) == ""
    assert base_arm_state(facts, plan(base_extra={"lora": [{"id": "3", "scale": "0"}]})) == ""


def test_llama_server_base_arm_entries_without_scale_or_id_count_as_not_zeroed() -> None:
    facts = ServerFacts(LLAMA_CPP, "p", loras=[LoraSlot(3, "a.gguf", 1.0)])
    for lora in ([{"id": 3}], [{"scale": 0}], ["3"]):
        assert "applies LoRA id 3" in base_arm_state(facts, plan(base_extra={"lora": lora}))


def test_base_arm_state_says_nothing_for_a_plain_vllm_base_or_another_runtime() -> None:
    assert base_arm_state(ServerFacts(VLLM, "v", parents={"base": None}), plan()) == ""
    assert base_arm_state(ServerFacts(TRANSFORMERS, "v", parents={"base": "x"}), plan()) == ""


def test_the_clean_base_hint_zeroes_every_llama_server_lora() -> None:
    facts = ServerFacts(LLAMA_CPP, "p", loras=[LoraSlot(0, "a", 1.0), LoraSlot(2, "b", 1.0)])
    assert clean_base_hint(facts) == ('send the base arm\'s requests with "lora": [{"id": 0, '
                                      '"scale": 0}, {"id": 2, "scale": 0}] (ftdiag does when '
                                      "--base-request-extra is not given)")
    assert '"lora": [{"id": 0, "scale": 0}] (' in clean_base_hint(ServerFacts(LLAMA_CPP, "p"))


def test_the_clean_base_hint_for_vllm_and_other_servers() -> None:
    assert clean_base_hint(VLLM_FACTS) == VLLM_HINT
    assert clean_base_hint(ServerFacts(TRANSFORMERS, "p")) == (
        "the base name must serve the base model without the adapter: serve the base "
        "separately, or select the adapter per request")
