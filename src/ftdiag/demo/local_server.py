"""Start and stop a local `transformers serve` (OpenAI-compatible) for demos, tests and benchmarks.

Local folders are model names there: the server loads a folder the first time a request names it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ftdiag.errors import FtdiagError

START_TIMEOUT = 180.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalServer:
    """A running server: its URL, process and log file."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, n: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-n:]


def launch(log: Path, port: int | None = None, extra: tuple[str, ...] = ()) -> LocalServer:
    """Start `transformers serve` on 127.0.0.1:port (CPU, offline) without waiting for it.

    extra: more `transformers serve` options (e.g. "--continuous-batching").
    """
    import importlib.util

    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("openai") is None:
        raise FtdiagError("serving needs transformers' serving extra",
                          hint="pip install -e '.[serve]'")
    port = port or free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get(
        "OMP_NUM_THREADS", "1"), "TRANSFORMERS_VERBOSITY": "error",
        "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", "--host", "127.0.0.1",
           "--port", str(port), "--device", "cpu", "--log-level", "error", *extra]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    return LocalServer(f"http://127.0.0.1:{port}", proc, log)


def wait_ready(server: LocalServer, timeout: float = START_TIMEOUT) -> LocalServer:
    """The server once /health answers 200 (its log in the error when it dies or hangs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise FtdiagError(f"transformers serve exited ({server.proc.returncode}): "
                              f"{server.log_tail(400)}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            time.sleep(0.3)
    stop(server)
    raise FtdiagError(f"transformers serve not ready after {timeout:.0f}s: "
                      f"{server.log_tail(400)}")


def start(log: Path, port: int | None = None, extra: tuple[str, ...] = ()) -> LocalServer:
    """`transformers serve` started and ready."""
    return wait_ready(launch(log, port, extra))


def stop(server: LocalServer) -> None:
    """Terminate the server process by its PID (kill after 10 s)."""
    if server.proc.poll() is not None:
        return
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=10)
