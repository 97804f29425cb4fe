"""llama.cpp's llama-server and LoRA converter, built from the llama-cpp-python sdist on demand.

`python tests/_llamacpp.py build` builds it once into the cache; `build --background` starts that
build in a detached, niced process and returns (`make test` runs the installs and the low-end suite
beside it; the tests that need the server wait on the build's lock).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

LLAMA_CPP_PYTHON = "0.3.36"  # the sdist that vendors llama.cpp (MIT, like llama.cpp itself)
LLAMA_CPP_COMMIT = "0c1e57098"  # ggml-org/llama.cpp commit it vendors (its CHANGELOG.md)
STAMP = "BUILT.json"
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",  # one static binary: the tree can be renamed after the build
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_UI=OFF",  # no npm
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # no web UI download: the server runs without one
    "-DGGML_CUDA=OFF",
    "-DGGML_VULKAN=OFF",
    "-DGGML_METAL=OFF",
    "-DGGML_HIP=OFF",
    "-DGGML_SYCL=OFF",
    "-DGGML_RPC=OFF",
    f"-DLLAMA_BUILD_COMMIT={LLAMA_CPP_COMMIT}",
)
# A compiler launcher: ggml's kernels (ggml/src) keep Release's -O3, where the server's speed
# lies; the rest (the HTTP server, JSON, chat parsers, model loading, sampling) compiles at -O0.
# Measured 2026-12-08: compile CPU time 1,203 s -> 836 s; tests/test_llamacpp.py 120 s -> 116 s.
LAUNCHER = """#!/bin/sh
src=; prev=
for a; do [ "$prev" = "-c" ] && src=$a; prev=$a; done
case "$src" in */ggml/src/*) exec "$@" ;; esac
for a; do shift; [ "$a" = "-O3" ] && a="-O0"; set -- "$@" "$a"; done
exec "$@"
"""


@dataclass(frozen=True)
class LlamaCpp:
    """A built llama.cpp tree: the server binary, the LoRA converter and its gguf-py."""

    root: Path
    source: Path
    server: Path
    convert_lora: Path
    gguf_py: Path

    @classmethod
    def at(cls, root: Path) -> LlamaCpp:
        """The layout of a tree under root (built or not)."""
        source = root / "source"
        return cls(root, source, root / "bin" / "llama-server",
                   source / "convert_lora_to_gguf.py", source / "gguf-py")

    def is_built(self) -> bool:
        """Whether the build finished (its stamp is written last)."""
        return (self.root / STAMP).is_file() and self.server.is_file()

    def stamp(self) -> dict[str, Any]:
        """What the build recorded: pin, commit, flags, build seconds."""
        return json.loads((self.root / STAMP).read_text())


def cache_root() -> Path:
    """$FTDIAG_CACHE, or ~/.cache/ftdiag."""
    return Path(os.environ.get("FTDIAG_CACHE") or Path.home() / ".cache" / "ftdiag")


def tree_dir(cache: Path | None = None) -> Path:
    """Where the pinned tree lives: <cache>/llama.cpp/<pin>."""
    return (cache or cache_root()) / "llama.cpp" / LLAMA_CPP_PYTHON


def _run(cmd: Sequence[str | Path], log: Path, what: str, **kwargs: Any) -> None:
    """Run cmd appending to log; raise with the log's tail if it fails."""
    with log.open("a") as out:
        out.write(f"$ {' '.join(map(str, cmd))}\n")
        out.flush()
        rc = subprocess.call([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, **kwargs)
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"{what} failed (exit {rc}); see {log}:\n{tail}")


def _fetch_source(work: Path, log: Path) -> Path:
    """Download the sdist with this interpreter's pip; extract its vendored llama.cpp."""
    dl = work / "sdist"
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
          "--disable-pip-version-check", "--dest", dl, f"llama-cpp-python=={LLAMA_CPP_PYTHON}"],
         log, "pip download")
    (archive,) = dl.glob("*.tar.gz")
    prefix = f"{archive.name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        tar.extractall(work / "sdist", members=members, filter="data")
    source = work / "source"
    (work / "sdist" / prefix).rename(source)
    shutil.rmtree(dl)
    return source


def _build(work: Path, jobs: int) -> float:
    """Fetch, configure and build llama-server under work; the build seconds."""
    log = work / "build.log"
    start = time.monotonic()
    source = _fetch_source(work, log)
    build = work / "build"
    launcher = work / "compile.sh"
    launcher.write_text(LAUNCHER)
    launcher.chmod(0o755)
    flags = [*CMAKE_FLAGS, f"-DCMAKE_C_COMPILER_LAUNCHER={launcher}",
             f"-DCMAKE_CXX_COMPILER_LAUNCHER={launcher}"]
    _run(["cmake", "-S", source, "-B", build, *flags], log, "cmake configure")
    _run(["cmake", "--build", build, "--target", "llama-server", "--parallel", str(jobs)],
         log, "cmake build")
    (work / "bin").mkdir()
    (build / "bin" / "llama-server").rename(work / "bin" / "llama-server")
    shutil.rmtree(build)  # objects are not needed: the binary is static
    return time.monotonic() - start


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive fcntl lock on path, held for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_built(cache: Path | None = None, *, jobs: int | None = None) -> LlamaCpp:
    """The pinned llama.cpp tree, downloading and building it first if needed."""
    target = tree_dir(cache)
    llama = LlamaCpp.at(target)
    if llama.is_built():
        return llama
    with _locked(target.with_name(f"{target.name}.lock")):
        if llama.is_built():  # another process built it while we waited
            return llama
        for stale in target.parent.glob(f".{target.name}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed build (we hold the lock)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        work.chmod(0o755)  # mkdtemp makes it 0700
        try:
            seconds = _build(work, jobs or os.cpu_count() or 2)
            stamp = {"llama_cpp_python": LLAMA_CPP_PYTHON, "llama_cpp_commit": LLAMA_CPP_COMMIT,
                     "cmake_flags": list(CMAKE_FLAGS), "launcher": LAUNCHER,
                     "build_seconds": round(seconds, 1)}
            (work / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
            if target.exists():
                shutil.rmtree(target)  # an unfinished tree (no stamp)
            work.rename(target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return llama


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerHandle:
    """A running llama-server: its URL, PID and log; stop() ends it by PID."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path
    stopped: bool = field(default=False, init=False)

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    def request(self, method: str, path: str, payload: Any = None,
                timeout: float = 120.0) -> tuple[int, Any]:
        """(HTTP status, decoded JSON or text) of one request to the server."""
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, body = err.code, err.read()
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by PID, then SIGKILL if it has not exited within timeout."""
        if self.stopped:
            return
        self.stopped = True
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.process.wait()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _wait_healthy(handle: ServerHandle, deadline: float) -> None:
    """Poll /health until it answers {"status": "ok"}; raise with the log if it cannot."""
    while time.monotonic() < deadline:
        if handle.process.poll() is not None:
            raise RuntimeError(f"llama-server exited ({handle.process.returncode}); "
                               f"{handle.log}:\n{handle.log_tail()}")
        with contextlib.suppress(OSError):
            status, body = handle.request("GET", "/health", timeout=2.0)
            if status == 200 and isinstance(body, dict) and body.get("status") == "ok":
                return
        time.sleep(0.2)
    raise TimeoutError(f"llama-server not healthy in time; {handle.log}:\n{handle.log_tail()}")


def start_server(model: Path, *, lora: Sequence[Path] = (), extra_args: Sequence[str] = (),
                 log: Path | None = None, ctx_size: int = 2048, slots: int = 1,
                 threads: int = 1, timeout: float = 120.0,
                 llama: LlamaCpp | None = None) -> ServerHandle:
    """Start llama-server on a free loopback port and wait until /health says ok."""
    # threads=1: ggml's OpenMP threads spin-wait, so 2 threads on 2 busy cores run 2-3x slower
    llama = llama or ensure_built()
    port = free_port()
    if log is None:
        log = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
    cmd = [str(llama.server), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
           "--ctx-size", str(ctx_size), "--parallel", str(slots), "--no-webui",
           "--threads", str(threads)]
    for adapter in lora:
        cmd += ["--lora", str(adapter)]  # one flag each: --lora splits its value on commas
    cmd += list(extra_args)
    # llama-server reads LLAMA_ARG_* (and HF_*) settings from the environment: ignore the caller's
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
    with log.open("w") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env)
    handle = ServerHandle(process, f"http://127.0.0.1:{port}", log)
    try:
        _wait_healthy(handle, time.monotonic() + timeout)
    except BaseException:
        handle.stop()
        raise
    return handle


def convert_lora(adapter_dir: Path, base_dir: Path, out_file: Path, outtype: str = "f32", *,
                 llama: LlamaCpp | None = None) -> Path:
    """A PEFT adapter as a LoRA GGUF, by the tree's convert_lora_to_gguf.py and its gguf-py."""
    llama = llama or ensure_built()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(llama.gguf_py), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, str(llama.convert_lora), str(adapter_dir), "--base", str(base_dir),
           "--outtype", outtype, "--outfile", str(out_file)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0 or not out_file.is_file():
        raise RuntimeError(f"convert_lora_to_gguf.py failed (exit {proc.returncode}):\n"
                           f"{proc.stderr.strip()}")
    return out_file


def build_in_background(cache: Path | None = None) -> Path | None:
    """Start ensure_built() in a detached, niced process; its log, or None if already built.

    Returns once that process holds the build lock (or has finished), so a later ensure_built()
    waits for this build instead of starting its own.
    """
    target = tree_dir(cache)
    if LlamaCpp.at(target).is_built():
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    log = target.with_name(f"{target.name}.background.log")
    env = {**os.environ, "FTDIAG_CACHE": str(cache or cache_root())}
    with log.open("w") as out:
        proc = subprocess.Popen(["nice", "-n", "10", sys.executable, __file__, "build"], env=env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    lock = target.with_name(f"{target.name}.lock")
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        with lock.open("a") as fh:  # free while the child has not taken it yet
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return log
            fcntl.flock(fh, fcntl.LOCK_UN)
        time.sleep(0.1)
    return log


def main(argv: Sequence[str] | None = None) -> int:
    """`build`: build the pinned tree (if needed) and print its paths and build time."""
    parser = argparse.ArgumentParser(prog="tests/_llamacpp.py", description=main.__doc__)
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--jobs", type=int, default=None, help="parallel build jobs")
    parser.add_argument("--background", action="store_true",
                        help="start the build in a detached process and return")
    args = parser.parse_args(argv)
    if args.background:
        log = build_in_background()
        print("llama-server: already built" if log is None
              else f"llama-server: building in the background, log {log}")
        return 0
    start = time.monotonic()
    llama = ensure_built(jobs=args.jobs)
    print(f"llama-cpp-python {LLAMA_CPP_PYTHON} (llama.cpp {LLAMA_CPP_COMMIT})")
    for name in ("root", "source", "server", "convert_lora", "gguf_py"):
        print(f"{name:13} {getattr(llama, name)}")
    print(f"build time    {llama.stamp()['build_seconds']} s "
          f"(this call: {time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
