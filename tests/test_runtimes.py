"""Runtime detection and each arm's request, against servers that answer as the cited sources say.

llama.cpp and `transformers serve` also run for real (test_llamacpp.py, test_endpoint.py); vLLM,
Ollama and TGI are not run here: these servers answer their GET routes with the shapes read
from those runtimes' sources (abtest.runtimes.RULES cites each).
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _ab_helpers import write_titles
from typer.testing import CliRunner

from ftdiag.abtest.runtimes import (
    LLAMA_CPP,
    OLLAMA,
    RULES,
    TGI,
    TRANSFORMERS,
    UNKNOWN,
    VLLM,
    LoraSlot,
    ServerFacts,
    detect,
    plan_arms,
    root_url,
)
from ftdiag.abtest.served_checks import base_arm_state
from ftdiag.cli.app import app
from ftdiag.errors import FtdiagError

VLLM_MODELS = {"object": "list", "data": [
    {"id": "base-model", "object": "model", "owned_by": "vllm", "root": "/m/base",
     "parent": None},
    {"id": "titles-lora", "object": "model", "owned_by": "vllm", "root": "/a/titles",
     "parent": "base-model"}]}
ROUTES: dict[str, dict[str, Any]] = {
    VLLM: {"/v1/models": VLLM_MODELS, "/version": {"version": "0.11.0"}},
    OLLAMA: {"/v1/models": {"object": "list", "data": [{"id": "titles:latest",
                                                         "owned_by": "library"}]},
             "/api/version": {"version": "0.12.3"}},
    TGI: {"/v1/models": {"object": "list", "data": [{"id": "tgi", "owned_by": "tgi"}]},
          "/info": {"model_id": "base", "router": "text-generation-router",
                    "version": "3.3.0"}},
    TRANSFORMERS: {"/v1/models": {"object": "list", "data": []},
                   "/openapi.json": {"paths": {"/v1/models": {}, "/load_model": {}}}},
    UNKNOWN: {"/v1/models": {"object": "list", "data": [{"id": "m", "owned_by": "me"}]}},
    LLAMA_CPP: {"/v1/models": {"object": "list", "data": [{"id": "/m/base.gguf",
                                                           "owned_by": "llamacpp"}]},
                "/props": {"build_info": "b1-0c1e570"},
                "/lora-adapters": [{"id": 0, "path": "/a/x.gguf", "scale": 1.0},
                                   {"id": 1, "path": "/a/y.gguf", "scale": 1.0}]},
}


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    """An HTTP server answering GETs from ROUTES[param] with JSON, anything else with 404."""
    routes = ROUTES[request.param]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = routes.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body if body is not None else {"error": "no"}).encode())

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("server", [VLLM, OLLAMA, TGI, TRANSFORMERS, UNKNOWN, LLAMA_CPP],
                         indirect=True)
def test_each_runtime_is_identified_by_what_it_exposes(server: str,
                                                       request: pytest.FixtureRequest) -> None:
    expected = request.node.callspec.params["server"]
    facts = detect(server, timeout=5)
    assert facts.runtime == expected
    assert facts.single_model == (expected == LLAMA_CPP)


@pytest.mark.parametrize("server", [VLLM], indirect=True)
def test_vllm_adapter_is_the_entry_whose_parent_is_the_base(server: str) -> None:
    facts = detect(server, timeout=5)
    assert facts.version == "0.11.0"
    plan = plan_arms(facts, served_base=None, served_adapter=None, request_extra=None,
                     base_request_extra=None)
    assert (plan.base.model, plan.adapter.model) == ("base-model", "titles-lora")
    assert plan.base.extra == plan.adapter.extra == {}
    # a LoRA module asked for as the base is E005 from the server's own listing
    wrong = plan_arms(facts, served_base="titles-lora", served_adapter="titles-lora",
                      request_extra=None, base_request_extra=None)
    assert "LoRA module on vLLM" in base_arm_state(facts, wrong)
    assert base_arm_state(facts, plan) == ""


@pytest.mark.parametrize("server", [OLLAMA, TRANSFORMERS, UNKNOWN], indirect=True)
def test_name_routed_runtimes_need_both_names(server: str) -> None:
    facts = detect(server, timeout=5)
    with pytest.raises(FtdiagError, match="--served-base NAME and --served-adapter NAME"):
        plan_arms(facts, served_base=None, served_adapter="x", request_extra=None,
                  base_request_extra=None)
    plan = plan_arms(facts, served_base="b", served_adapter="a", request_extra=None,
                     base_request_extra=None)
    assert (plan.base.model, plan.adapter.model) == ("b", "a")


@pytest.mark.parametrize("server", [TGI], indirect=True)
def test_tgi_selects_the_adapter_by_adapter_id(server: str) -> None:
    facts = detect(server, timeout=5)
    with pytest.raises(FtdiagError, match="--served-adapter ID"):
        plan_arms(facts, served_base=None, served_adapter=None, request_extra=None,
                  base_request_extra=None)
    plan = plan_arms(facts, served_base=None, served_adapter="titles", request_extra=None,
                     base_request_extra=None)
    assert plan.adapter.extra == {"adapter_id": "titles"} and plan.base.extra == {}


@pytest.mark.parametrize("server", [LLAMA_CPP], indirect=True)
def test_llama_cpp_with_two_loras_needs_a_choice(server: str) -> None:
    facts = detect(server, timeout=5)
    assert [s.path for s in facts.loras] == ["/a/x.gguf", "/a/y.gguf"]
    with pytest.raises(FtdiagError, match="2 LoRAs loaded and none was chosen"):
        plan_arms(facts, served_base=None, served_adapter=None, request_extra=None,
                  base_request_extra=None)
    for chosen in ("1", "/a/y.gguf", "y.gguf"):
        plan = plan_arms(facts, served_base=None, served_adapter=chosen, request_extra=None,
                         base_request_extra=None)
        assert plan.adapter.extra == {"lora": [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 1.0}],
                                      "cache_prompt": False}
        assert plan.base.extra == {"lora": [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.0}],
                                   "cache_prompt": False}
    with pytest.raises(FtdiagError, match="none of the server's LoRAs"):
        plan_arms(facts, served_base=None, served_adapter="z.gguf", request_extra=None,
                  base_request_extra=None)


def test_llama_cpp_base_arm_state_follows_the_servers_rule() -> None:
    """A request that does not set an id gets that LoRA at its global scale (server-context.cpp)."""
    facts = ServerFacts(LLAMA_CPP, "test", models=["m"], loras=[LoraSlot(0, "/a.gguf", 1.0)])

    def state(base_extra: dict[str, Any] | None) -> str:
        return base_arm_state(facts, plan_arms(
            facts, served_base=None, served_adapter=None,
            request_extra={"lora": [{"id": 0, "scale": 1.0}]}, base_request_extra=base_extra))

    assert "global scale 1" in state({"lora": []})
    assert "global scale 1" in state({})
    assert state({"lora": [{"id": 0, "scale": 0}]}) == ""
    assert state(None) == ""  # ftdiag's own base arm sets every LoRA to 0
    off = ServerFacts(LLAMA_CPP, "test", models=["m"], loras=[LoraSlot(0, "/a.gguf", 0.0)])
    assert base_arm_state(off, plan_arms(off, served_base=None, served_adapter=None,
                                          request_extra=None, base_request_extra={})) == ""


def test_no_lora_on_llama_cpp_is_an_error_not_a_pass() -> None:
    facts = ServerFacts(LLAMA_CPP, "test", models=["m"])
    with pytest.raises(FtdiagError, match="no LoRA loaded"):
        plan_arms(facts, served_base=None, served_adapter=None, request_extra=None,
                  base_request_extra=None)


def test_every_rule_cites_its_source() -> None:
    assert {r.runtime for r in RULES} == {LLAMA_CPP, VLLM, OLLAMA, TGI, TRANSFORMERS}
    for rule in RULES:
        assert rule.source and ("run in the tests" in rule.source) == rule.run_here
        assert rule.run_here or "not run here" in rule.source


def test_root_url() -> None:
    assert root_url("http://h:8080/v1") == "http://h:8080"
    assert root_url("http://h:8080/v1/") == "http://h:8080"
    assert root_url("http://h:8080") == "http://h:8080"


@pytest.mark.parametrize("server", [UNKNOWN], indirect=True)
def test_two_arms_that_send_the_same_request_are_refused(server: str, tmp_path: Path) -> None:
    titles = write_titles(tmp_path / "titles.txt")
    res = CliRunner().invoke(app, ["ab-test", "--endpoint", server, "--served-base", "m",
                                   "--served-adapter", "m", "--titles", str(titles)])
    assert res.exit_code == 2
    assert "would send the same request" in res.stderr and "Traceback" not in res.stderr
