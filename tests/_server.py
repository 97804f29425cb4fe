"""A real `transformers serve` (OpenAI-compatible) in a subprocess, serving local model folders.

Local paths are model names there: the server loads a folder the first time a request names it.
One server per test session; it is stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running server: its URL, process and log file."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, n: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-n:]


def start_server(log: Path, port: int | None = None) -> Server:
    """`transformers serve` on 127.0.0.1:port (CPU, offline), returned once /health answers."""
    return wait_ready(launch_server(log, port))


def launch_server(log: Path, port: int | None = None) -> Server:
    """Start `transformers serve` on 127.0.0.1:port (CPU, offline) without waiting for it."""
    port = port or free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", "--host", "127.0.0.1",
           "--port", str(port), "--device", "cpu", "--log-level", "error"]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    return Server(f"http://127.0.0.1:{port}", proc, log)


def wait_ready(server: Server) -> Server:
    """The server once /health answers 200 (its log in the error when it dies or hangs)."""
    proc = server.proc
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"transformers serve exited ({proc.returncode}):\n"
                               f"{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            time.sleep(0.3)
    stop_server(server)
    raise RuntimeError(f"transformers serve not ready after {START_TIMEOUT:.0f}s:\n"
                       f"{server.log_tail()}")


def stop_server(server: Server) -> None:
    """Terminate the server process by its PID (kill after 10 s)."""
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=10)


@dataclass
class ServedModels:
    """Folders the server answers for: the base, the merged adapter, and broken exports."""

    base: Path
    adapter: Path  # the PEFT adapter (local reference)
    merged: Path  # base + adapter merged: the healthy served fine-tune
    base_copy: Path  # a copy of the base saved under the adapter's name: the broken case
    rescaled: Path  # merged with lora_alpha halved: drifts from the adapter without being the base


def halve_alpha_merge(base: Path, adapter: Path, work: Path) -> Path:
    """The adapter merged at half its scale (wrong alpha at export time)."""
    import json

    from ftdiag.merge import merge_adapter

    bad = work / "adapter-half-alpha"
    shutil.copytree(adapter, bad)
    cfg_path = bad / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["lora_alpha"] = cfg["lora_alpha"] / 2
    cfg_path.write_text(json.dumps(cfg))
    out = work / "merged-half-alpha"
    merge_adapter(bad, str(base), out)
    return out


@pytest.fixture(scope="session")
def served_models(tiny_llama: Path, trained_adapter: Path, merged_dir: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> ServedModels:
    work = tmp_path_factory.mktemp("served")
    base_copy = work / "fine-tuned"  # named like an export, holds the base
    shutil.copytree(tiny_llama, base_copy)
    return ServedModels(tiny_llama, trained_adapter, merged_dir, base_copy,
                        halve_alpha_merge(tiny_llama, trained_adapter, work))


@pytest.fixture(scope="session")
def openai_server(tmp_path_factory: pytest.TempPathFactory,
                  request: pytest.FixtureRequest) -> Iterator[Server]:
    """One real `transformers serve` for the whole session (models are built while it starts)."""
    pytest.importorskip("fastapi", reason="needs the serve extra: pip install -e '.[serve]'")
    server = launch_server(tmp_path_factory.mktemp("server") / "serve.log")
    try:
        request.getfixturevalue("served_models")
        wait_ready(server)
        yield server
    finally:
        stop_server(server)


__all__ = [
    "ServedModels",
    "Server",
    "launch_server",
    "openai_server",
    "served_models",
    "start_server",
    "stop_server",
    "wait_ready",
]
