"""Greedy completions from an OpenAI-compatible server (vLLM, llama-server, TGI, transformers).

The `openai` client does the HTTP work; requests run concurrently under a semaphore, after one
probe request per arm. Nothing is retried (a retry multiplies the load on a struggling server),
and a whole-run deadline bounds the wait. What the user cannot fix by retrying (no server, a
timeout, an answer that is not OpenAI's) is one FtdiagError naming the arm; what one model
name's requests return as an HTTP error is kept as evidence (E003), not raised.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ftdiag.errors import FtdiagError
from ftdiag.progress import ProgressFn


@dataclass
class EndpointConfig:
    """Where the server is and how to ask it."""

    url: str
    api_key: str | None = None
    chat: bool = False  # /v1/chat/completions (server's chat template) instead of /v1/completions
    request_extra: dict[str, Any] | None = None  # adapter requests (lora, ...); None: not given
    base_request_extra: dict[str, Any] | None = None  # base requests; None: not given
    max_tokens: int = 128
    seed: int = 0
    concurrency: int = 8
    timeout: float = 120.0
    retries: int = 0  # never multiply the load on a struggling server
    deadline: float | None = None  # the whole run; None: from the requests and the timeout

    def run_deadline(self, requests: int) -> float:
        """Seconds the whole run may take: a probe round, then the rounds of the fan-out."""
        if self.deadline is not None:
            return self.deadline
        rounds = 1 + -(-requests // max(1, self.concurrency))
        return self.timeout * rounds + 5.0


@dataclass
class Served:
    """One model name's answers: a text per prompt (None where it failed) and the first error."""

    name: str
    texts: list[str | None]
    finish: list[str | None]
    tokens: list[int | None] = field(default_factory=list)  # completion tokens (server's usage)
    error: str | None = None  # the server's error text (status and body) for this name

    @property
    def ok(self) -> bool:
        return self.error is None and all(t is not None for t in self.texts)


def base_url(url: str) -> str:
    """`http://host:port` or `.../v1` → the `/v1` base the openai client wants."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise FtdiagError(f"not an http(s) URL: {url}", hint="e.g. --endpoint http://localhost:8000")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path += "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}"


def parse_extra(text: str | None, option: str = "--request-extra") -> dict[str, Any]:
    """A JSON object of fields added to request bodies (llama-server `lora`, TGI `adapter_id`)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise FtdiagError(f"{option} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise FtdiagError(f"{option} must be a JSON object, e.g. '{{\"adapter_id\": \"x\"}}'")
    return value


def make_client(cfg: EndpointConfig) -> Any:
    from openai import AsyncOpenAI

    key = cfg.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"  # most local servers ignore it
    return AsyncOpenAI(base_url=base_url(cfg.url), api_key=key, timeout=cfg.timeout,
                       max_retries=cfg.retries)


class ArmFailure(Exception):
    """A request of one arm failed in a way that ends the run (wraps the client's error)."""

    def __init__(self, arm: str, model: str, probe: bool, exc: Exception) -> None:
        super().__init__(str(exc))
        self.arm, self.model, self.probe, self.exc = arm, model, probe, exc


def _fatal(exc: Exception, cfg: EndpointConfig) -> FtdiagError | None:
    """The errors that end the run (no server, timeout, not OpenAI), as one line; else None."""
    import openai

    where = base_url(cfg.url)
    if isinstance(exc, ArmFailure):
        inner = _fatal(exc.exc, cfg)
        if inner is None:
            return None
        what = "probe request" if exc.probe else "request"
        return FtdiagError(f"{exc.arm} ({exc.model}): {inner.message} [{what}]", hint=inner.hint)
    if isinstance(exc, openai.APITimeoutError):
        return FtdiagError(f"{where} did not answer within {cfg.timeout:g}s",
                           hint="is the server stalled? raise --timeout if it is only slow, "
                           "or lower --concurrency")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return FtdiagError(f"cannot reach {where}: {cause}",
                           hint="is the server running? check --endpoint")
    if isinstance(exc, (openai.APIResponseValidationError, ValueError, TypeError,
                        AttributeError, KeyError, IndexError)):
        return FtdiagError(f"{where} did not answer like an OpenAI-compatible server ({exc})",
                           hint="--endpoint must be the server's OpenAI API (…/v1)")
    return None


def _status_text(exc: Exception) -> str:
    """`HTTP 404: {"detail": ...}`: what the server said."""
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    body = ""
    if response is not None:
        try:
            body = response.text
        except Exception:  # the body may be gone or undecodable
            body = ""
    if not body and getattr(exc, "__cause__", None) is not None:
        body = f"{type(exc).__name__}: {exc.__cause__!r}"
    body = " ".join((body or str(exc)).split())[:300]
    return f"HTTP {status}: {body}" if status else body


async def _complete(client: Any, cfg: EndpointConfig, model: str, extra: dict[str, Any],
                    prompt: Any) -> tuple[str, str, int | None]:
    """One greedy request; `prompt` is a string, or chat messages with cfg.chat."""
    common: dict[str, Any] = {"model": model, "max_tokens": cfg.max_tokens, "temperature": 0.0,
                              "seed": cfg.seed}
    if cfg.chat:
        resp = await client.chat.completions.create(
            messages=prompt, extra_body=extra or None, **common)
        choice = resp.choices[0]
        text = choice.message.content
    else:
        resp = await client.completions.create(prompt=prompt, extra_body=extra or None,
                                               **common)
        choice = resp.choices[0]
        text = choice.text
    if not isinstance(text, str):
        raise TypeError(f"no text in the answer: {str(resp)[:200]}")
    usage = getattr(resp, "usage", None)
    return text, str(choice.finish_reason), getattr(usage, "completion_tokens", None)


async def _run(cfg: EndpointConfig, arms: dict[str, tuple[str, dict[str, Any]]],
               jobs: list[tuple[str, int, Any]],
               progress: ProgressFn | None) -> tuple[dict[str, Served], list[str] | None]:
    import openai

    n_prompts = max((i for _, i, _ in jobs), default=-1) + 1
    served = {arm: Served(name, [None] * n_prompts, [None] * n_prompts, [None] * n_prompts)
              for arm, (name, _) in arms.items()}
    client = make_client(cfg)
    gate = asyncio.Semaphore(max(1, cfg.concurrency))
    done = 0

    async def one(arm: str, i: int, prompt: Any, probe: bool = False) -> None:
        nonlocal done
        record = served[arm]
        name, extra = arms[arm]
        if record.error is None:  # after a name's first error its other prompts are skipped
            async with gate:
                if record.error is None:
                    try:
                        (record.texts[i], record.finish[i],
                         record.tokens[i]) = await _complete(client, cfg, name, extra, prompt)
                    except openai.APIStatusError as exc:
                        record.error = _status_text(exc)
                    except Exception as exc:
                        raise ArmFailure(arm, name, probe, exc) from exc
        done += 1
        if progress:
            progress(done, len(jobs))

    deadline = cfg.run_deadline(len(jobs))
    try:
        async with asyncio.timeout(deadline):
            try:
                lists = await _list_models(client)  # also: is anything OpenAI-like there?
                probes = {arm: next(j for j in jobs if j[0] == arm) for arm in arms}
                async with asyncio.TaskGroup() as group:  # one request per arm first
                    for arm, i, prompt in probes.values():
                        group.create_task(one(arm, i, prompt, probe=True))
                async with asyncio.TaskGroup() as group:
                    for job in jobs:
                        if job not in probes.values():
                            group.create_task(one(*job))
                listed = await _list_models(client) if lists is not None else None
            except* Exception as group_exc:
                first = group_exc.exceptions[0]
                raise (_fatal(first, cfg) or first) from None
    except TimeoutError:
        raise FtdiagError(f"{base_url(cfg.url)}: {len(jobs)} requests did not finish within the "
                          f"run's deadline of {deadline:g}s", hint="is the server stalled? "
                          "raise --timeout if it is only slow") from None
    finally:
        await client.close()
    if lists is None and all(r.error for r in served.values()):
        route = "/chat/completions" if cfg.chat else "/completions"
        said = next(iter(served.values())).error or ""
        raise FtdiagError(f"no OpenAI API at {base_url(cfg.url)}: GET /models fails and POST "
                          f"{route} answers {said[:160]}",
                          hint="--endpoint must be the server's OpenAI API root (…/v1)")
    return served, listed


async def _list_models(client: Any) -> list[str] | None:
    """Names /v1/models lists, or None when the server does not list models."""
    import openai

    try:
        page = await client.models.list()
    except openai.APIStatusError:
        return None
    return [str(m.id) for m in page.data]


def fetch(cfg: EndpointConfig, arms: dict[str, tuple[str, dict[str, Any]]], prompts: list[Any],
          progress: ProgressFn | None = None) -> tuple[dict[str, Served], list[str] | None]:
    """Every prompt under every arm (model name, extra body fields), then /v1/models.

    /v1/models is read after the requests too: lazy servers list only what they loaded.
    `prompts` are strings (/v1/completions) or chat message lists (cfg.chat).
    Returns each arm's answers and the listed names (None where the server lists none).
    """
    jobs = [(arm, i, p) for i, p in enumerate(prompts) for arm in arms]
    return asyncio.run(_run(cfg, arms, jobs, progress))
