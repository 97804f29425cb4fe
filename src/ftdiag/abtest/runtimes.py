"""Which server answers at --endpoint, and what each arm must send it to get base or adapter.

Detection reads only what the server exposes (GET requests, one `--timeout` each; a server that
stalls on the first one ends the run). RULES is the one table of what each runtime does, each
row citing the source it was read from, so a maintainer can re-check it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ftdiag.errors import FtdiagError

LLAMA_CPP, VLLM, OLLAMA, TGI, TRANSFORMERS, UNKNOWN = (
    "llama.cpp", "vllm", "ollama", "tgi", "transformers serve", "openai-compatible")


@dataclass(frozen=True)
class RuntimeRule:
    """How ftdiag recognises one runtime and asks it for each arm."""

    runtime: str
    identified_by: str
    adapter_arm: str
    base_arm: str
    source: str  # where the rule was read (file, version), or "not run here" for the unverified
    run_here: bool


RULES = (
    RuntimeRule(LLAMA_CPP, "GET /v1/models owned_by 'llamacpp'; GET /props build_info",
                "lora: the chosen id at its scale, every other id at 0 (name ignored)",
                "lora: every loaded id at scale 0 (a --lora applies at its global scale to a "
                "request that does not set its id, an empty list included); both arms send "
                "cache_prompt false (a request without lora reuses a prompt cached under "
                "another LoRA setting)",
                "tools/server/server-context.cpp construct_lora_list and launch_slot_with_task, "
                "server-common.cpp parse_lora_request (llama.cpp 0c1e57098 in llama-cpp-python "
                "0.3.36); run in the tests", True),
    RuntimeRule(VLLM, "GET /v1/models owned_by 'vllm', entries with root and parent",
                "the /v1/models entry whose parent is the base (--lora-modules NAME=PATH)",
                "the root entry (parent null)",
                "vllm/entrypoints/openai/serving_models.py (ModelCard root/parent); not run here",
                False),
    RuntimeRule(OLLAMA, "GET /api/version", "the model name given", "the model name given",
                "ollama api/types.go (VersionResponse); not run here", False),
    RuntimeRule(TGI, "GET /info with model_id and router", "adapter_id: the id given (or the "
                "one /info lists)", "no adapter_id",
                "router/src/lib.rs (Info), docs multi-LoRA adapter_id; not run here", False),
    RuntimeRule(TRANSFORMERS, "GET /openapi.json lists /load_model or /v1/systemone",
                "the model name given", "the model name given",
                "transformers/cli/serving/server.py (transformers 5); run in the tests", True),
)


@dataclass
class LoraSlot:
    """One LoRA a llama-server loaded (`GET /lora-adapters`)."""

    id: int
    path: str
    scale: float


@dataclass
class ServerFacts:
    """What the server said about itself."""

    runtime: str
    evidence: str  # which answer identified it
    version: str | None = None
    models: list[str] | None = None  # /v1/models ids (None: not listed)
    parents: dict[str, str | None] = field(default_factory=dict)  # vLLM: id -> parent id
    loras: list[LoraSlot] = field(default_factory=list)  # llama.cpp
    adapter_ids: list[str] = field(default_factory=list)  # TGI (/info, where it lists them)

    @property
    def single_model(self) -> bool:
        """Answers any model name with its one model (so an unlisted name is no error)."""
        return self.runtime == LLAMA_CPP


@dataclass
class ArmRequest:
    """What one served arm sends: the model name and the fields added to each request body."""

    model: str
    extra: dict[str, Any] = field(default_factory=dict)
    chosen_by: str = "given"  # given | detected


@dataclass
class ServedPlan:
    """The two arms' requests, from the options given and the facts detected."""

    base: ArmRequest
    adapter: ArmRequest
    notes: list[str] = field(default_factory=list)


def root_url(url: str) -> str:
    """`http://host:port/v1` → `http://host:port` (where /props, /info, /api live)."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[:-3]
    return f"{parts.scheme}://{parts.netloc}{path}"


class _Http:
    """GET JSON with one timeout; a stall or a refused connection ends the run (one line)."""

    def __init__(self, url: str, timeout: float, api_key: str | None) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.root = root_url(url)
        self.client = httpx.Client(timeout=timeout, headers=headers, follow_redirects=True)
        self.timeout = timeout

    def get(self, path: str) -> Any:
        """The decoded JSON at path, or None (an HTTP error or an answer that is not JSON)."""
        import httpx

        try:
            resp = self.client.get(self.root + path)
        except httpx.TimeoutException:
            raise FtdiagError(f"{self.root} did not answer within {self.timeout:g}s (GET {path})",
                              hint="is the server stalled or still loading? raise --timeout "
                              "if it is only slow") from None
        except httpx.HTTPError as exc:
            raise FtdiagError(f"cannot reach {self.root}: {exc}",
                              hint="is the server running? check --endpoint") from None
        if resp.status_code >= 400:
            return None
        try:
            return resp.json()
        except (ValueError, json.JSONDecodeError):
            return None

    def close(self) -> None:
        self.client.close()


def detect(url: str, *, timeout: float, api_key: str | None = None) -> ServerFacts:
    """Identify the runtime behind url from what it exposes (GET only)."""
    http = _Http(url, timeout, api_key)
    try:
        return _detect(http)
    finally:
        http.close()


def _detect(http: _Http) -> ServerFacts:
    listing = http.get("/v1/models")
    entries = [e for e in (listing or {}).get("data", []) if isinstance(e, dict)] \
        if isinstance(listing, dict) else []
    models = [str(e.get("id")) for e in entries] if isinstance(listing, dict) else None
    owners = {str(e.get("owned_by", "")) for e in entries}
    props = http.get("/props") if "vllm" not in owners else None
    if "llamacpp" in owners or (isinstance(props, dict) and "build_info" in props):
        loras = http.get("/lora-adapters")
        slots = [LoraSlot(int(s["id"]), str(s.get("path", "")), float(s.get("scale", 0.0)))
                 for s in (loras if isinstance(loras, list) else [])
                 if isinstance(s, dict) and "id" in s]
        build = props.get("build_info") if isinstance(props, dict) else None
        how = "GET /props build_info" if build else "GET /v1/models owned_by llamacpp"
        return ServerFacts(LLAMA_CPP, how, str(build) if build else None, models, loras=slots)
    if "vllm" in owners or any("parent" in e and "root" in e for e in entries):
        version = http.get("/version")
        return ServerFacts(VLLM, "GET /v1/models owned_by vllm",
                           (version or {}).get("version") if isinstance(version, dict) else None,
                           models, parents={str(e.get("id")): e.get("parent") for e in entries})
    ollama = http.get("/api/version")
    if isinstance(ollama, dict) and "version" in ollama:
        return ServerFacts(OLLAMA, "GET /api/version", str(ollama["version"]), models)
    info = http.get("/info")
    if isinstance(info, dict) and "model_id" in info and "router" in info:
        ids = [str(a) for key in ("lora_adapters", "adapters", "adapter_ids")
               for a in (info.get(key) or []) if isinstance(a, (str, int))]
        return ServerFacts(TGI, "GET /info router", str(info.get("version")), models,
                           adapter_ids=ids)
    spec = http.get("/openapi.json")
    paths = set((spec or {}).get("paths", {})) if isinstance(spec, dict) else set()
    if "/load_model" in paths or "/v1/systemone" in paths:
        return ServerFacts(TRANSFORMERS, "GET /openapi.json paths", None, models)
    if models is None:
        raise FtdiagError(f"no OpenAI API at {http.root}: GET /v1/models answers no model list",
                          hint="--endpoint must be the server's OpenAI API root (…/v1)")
    return ServerFacts(UNKNOWN, "GET /v1/models", None, models)


def plan_arms(facts: ServerFacts, *, served_base: str | None, served_adapter: str | None,
              request_extra: dict[str, Any] | None,
              base_request_extra: dict[str, Any] | None) -> ServedPlan:
    """Each arm's model name and extra fields: what was given wins, the rest follows the runtime."""
    if facts.runtime == LLAMA_CPP:
        plan = _llama_cpp(facts, served_base, served_adapter, given=request_extra is not None)
    elif facts.runtime == VLLM:
        plan = _vllm(facts, served_base, served_adapter)
    elif facts.runtime == TGI:
        plan = _tgi(facts, served_base, served_adapter)
    else:
        plan = _named(facts, served_base, served_adapter)
    if request_extra is not None:
        plan.adapter.extra, plan.adapter.chosen_by = request_extra, "given"
    if base_request_extra is not None:
        plan.base.extra, plan.base.chosen_by = base_request_extra, "given"
    if facts.runtime == LLAMA_CPP:  # each request on its own: no KV reuse across LoRA settings
        for arm in (plan.base, plan.adapter):
            arm.extra = {**arm.extra, "cache_prompt": arm.extra.get("cache_prompt", False)}
    return plan


def _listed(facts: ServerFacts) -> str:
    return ", ".join((facts.models or [])[:8]) or "none"


def _named(facts: ServerFacts, served_base: str | None,
           served_adapter: str | None) -> ServedPlan:
    """Runtimes that route by model name only: both names must be given."""
    if not served_base or not served_adapter:
        raise FtdiagError(f"{facts.runtime} at the endpoint routes by model name: give "
                          "--served-base NAME and --served-adapter NAME",
                          hint=f"GET /v1/models lists: {_listed(facts)}")
    return ServedPlan(ArmRequest(served_base), ArmRequest(served_adapter))


def _llama_cpp(facts: ServerFacts, served_base: str | None, served_adapter: str | None,
               given: bool) -> ServedPlan:
    """One model; the LoRA is chosen per request by `lora` (id, scale), names do not matter.

    given: the adapter arm's fields came with --request-extra (then --served-adapter is a name).
    """
    name = (facts.models or ["model"])[0]
    if given:
        base = ArmRequest(served_base or name, {"lora": [{"id": s.id, "scale": 0.0}
                                                         for s in facts.loras]}, "detected")
        return ServedPlan(base, ArmRequest(served_adapter or served_base or name))
    if not facts.loras:
        raise FtdiagError("llama-server at the endpoint has no LoRA loaded (GET /lora-adapters "
                          "is empty): it can serve only the base",
                          hint="start it with --lora ADAPTER.gguf (convert_lora_to_gguf.py), "
                          "or check a merged export with ftdiag check-export")
    chosen = _pick_lora(facts.loras, served_adapter)
    scale = chosen.scale if chosen.scale > 0 else 1.0
    adapter = ArmRequest(served_base or name, {"lora": [
        {"id": s.id, "scale": scale if s.id == chosen.id else 0.0} for s in facts.loras]},
        "detected")
    base = ArmRequest(served_base or name, {"lora": [{"id": s.id, "scale": 0.0}
                                                     for s in facts.loras]}, "detected")
    notes = [f"llama.cpp: LoRA id {chosen.id} ({chosen.path}) at scale {scale:g} for the adapter "
             "arm, every loaded LoRA at scale 0 for the base arm; no prompt cache reuse"]
    return ServedPlan(base, adapter, notes)


def _pick_lora(slots: list[LoraSlot], wanted: str | None) -> LoraSlot:
    if wanted is None:
        if len(slots) == 1:
            return slots[0]
        raise FtdiagError(f"llama-server has {len(slots)} LoRAs loaded and none was chosen: "
                          + "; ".join(f"id {s.id} {s.path}" for s in slots),
                          hint="pick one with --served-adapter ID or --served-adapter PATH")
    for s in slots:
        if wanted in (str(s.id), s.path) or s.path.endswith("/" + wanted):
            return s
    raise FtdiagError(f"--served-adapter {wanted} is none of the server's LoRAs: "
                      + "; ".join(f"id {s.id} {s.path}" for s in slots),
                      hint="give the id or the path that GET /lora-adapters lists")


def _vllm(facts: ServerFacts, served_base: str | None,
          served_adapter: str | None) -> ServedPlan:
    """The base is a root entry, the adapter an entry whose parent is that base."""
    roots = [m for m, parent in facts.parents.items() if not parent]
    base = served_base or (roots[0] if len(roots) == 1 else None)
    if base is None:
        raise FtdiagError(f"vLLM serves {len(roots)} base models and none was chosen",
                          hint=f"give --served-base NAME (GET /v1/models lists: {_listed(facts)})")
    children = [m for m, parent in facts.parents.items() if parent == base]
    adapter = served_adapter or (children[0] if len(children) == 1 else None)
    if adapter is None:
        what = "no LoRA module" if not children else f"{len(children)} LoRA modules"
        raise FtdiagError(f"vLLM serves {what} on {base} and none was chosen",
                          hint="start vLLM with --enable-lora --lora-modules NAME=PATH, or give "
                          "--served-adapter NAME")
    detected = "given" if served_adapter else "detected"
    return ServedPlan(ArmRequest(base, chosen_by="given" if served_base else "detected"),
                      ArmRequest(adapter, chosen_by=detected))


def _tgi(facts: ServerFacts, served_base: str | None,
         served_adapter: str | None) -> ServedPlan:
    """One model; the adapter is chosen per request by `adapter_id`."""
    name = served_base or "tgi"
    adapter_id = served_adapter or (facts.adapter_ids[0] if len(facts.adapter_ids) == 1 else None)
    if adapter_id is None:
        raise FtdiagError("TGI at the endpoint: give the adapter id with --served-adapter ID",
                          hint="the id TGI was started with (LORA_ADAPTERS)")
    return ServedPlan(ArmRequest(name), ArmRequest(name, {"adapter_id": adapter_id}, "detected"))
