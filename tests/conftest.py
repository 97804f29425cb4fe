"""Shared fixtures: tiny random models built in-process, FTDIAG_CACHE in a temp dir."""

from __future__ import annotations

import os
import shutil
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# the tests' environment, not the users': never reach the Hub (tests/test_hub.py builds caches)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ftdiag.testing import tiny

REAL_CACHE = Path(os.environ.get("FTDIAG_CACHE") or Path.home() / ".cache" / "ftdiag")
# Opt-in, for mutation runs only (tests/_mutate.py sets both, in a fresh folder per group run):
# FIXTURE_CACHE: the session fixtures below are built once into this folder and reused by every
# later pytest session, since mutmut starts one session per mutant and rebuilding the tiny models
# and training their adapters was most of a live mutant's time. Sound because they are made by
# ftdiag.testing.tiny (and peft/transformers) alone, which no mutation group mutates, so every
# mutant would build byte-for-byte what the cache holds. Unset (the default), each session builds
# its own in pytest's temp dir, as always.
FIXTURE_CACHE = os.environ.get("FTDIAG_TEST_FIXTURE_CACHE")
# UNITS_FIRST: run the hand-built unit tests (tests/test_*_units.py) before the rest, so a mutant
# a unit test kills stops there (mutmut passes -x and lists a mutant's tests in no fixed order).
UNITS_FIRST = bool(os.environ.get("FTDIAG_TEST_UNITS_FIRST"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--write-schemas", action="store_true",
                     help="rewrite tests/schemas from this run (make schemas)")


def pytest_configure(config: pytest.Config) -> None:
    import _schema

    _schema.WRITE = bool(config.getoption("--write-schemas"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if UNITS_FIRST:  # stable: the order within each kind is kept
        items.sort(key=lambda item: not item.path.name.endswith("_units.py"))


def _fixture_dir(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Path],
                 sub: str = "") -> Path:
    """build(folder) -> what it made (folder or folder/sub), in a fresh temp dir or the cache.

    The cache entry is built in a temp dir beside it and renamed into place when complete, so a
    build that crashed or was killed (a mutant's timeout) is never reused.
    """
    if not FIXTURE_CACHE:
        folder = factory.mktemp(name)
        return build(folder / sub if sub else folder)
    done = Path(FIXTURE_CACHE) / name
    if not done.is_dir():
        done.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=done.parent))
        build(work / sub if sub else work)
        try:
            work.rename(done)
        except OSError:  # another session finished it first: keep theirs
            shutil.rmtree(work, ignore_errors=True)
    return done / sub if sub else done


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Every test gets its own FTDIAG_CACHE, except slow tests (they share the converted model)."""
    if request.node.get_closest_marker("slow"):
        monkeypatch.setenv("FTDIAG_CACHE", str(REAL_CACHE))
    else:
        monkeypatch.setenv("FTDIAG_CACHE", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def _fresh_consoles() -> None:
    """Each test's CLI runs build their own rich consoles (a console reads COLUMNS when built).

    The CLI keeps one console per process; without this, a test's width would be the one of
    whichever test ran first in that pytest worker.
    """
    from ftdiag.render import console

    console.out.cache_clear()
    console.err.cache_clear()


@pytest.fixture(autouse=True)
def _cli_never_crashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every CLI run in the tests fails its test on an uncaught exception.

    Under CliRunner a crash is exit 1 with nothing printed, the same code as a fail verdict; only
    SystemExit (typer.Exit, the CLI's exit 2 for a user error) is how a command may end.
    """
    from typer.testing import CliRunner

    invoke = CliRunner.invoke

    def checked(self: CliRunner, *args: Any, **kwargs: Any) -> Any:
        res = invoke(self, *args, **kwargs)
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            trace = "".join(traceback.format_exception(*res.exc_info)) if res.exc_info else ""
            pytest.fail(f"the CLI crashed (exit {res.exit_code}) after printing:\n"
                        f"{res.output[-2000:]}\n{trace}")
        return res

    monkeypatch.setattr(CliRunner, "invoke", checked)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama base model folder (model + tokenizer)."""
    return _fixture_dir(tmp_path_factory, "tiny-llama", lambda d: tiny.save_base(d, "llama"))


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GPT-2 base model folder (Conv1D c_attn)."""
    return _fixture_dir(tmp_path_factory, "tiny-gpt2", lambda d: tiny.save_base(d, "gpt2"))


@pytest.fixture(scope="session")
def trained_adapter(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A healthy LoRA adapter trained for a few steps on the tiny Llama."""
    return _fixture_dir(tmp_path_factory, "adapter",
                        lambda d: tiny.train_toy_adapter(tiny_llama, d), sub="adapter")


@pytest.fixture(scope="session")
def trained_gpt2_adapter(tiny_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A healthy LoRA adapter trained for a few steps on the tiny GPT-2."""
    return _fixture_dir(tmp_path_factory, "adapter-gpt2",
                        lambda d: tiny.train_toy_adapter(tiny_gpt2, d), sub="adapter")


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 base model folder (q/k/v bias, tied embeddings)."""
    return _fixture_dir(tmp_path_factory, "tiny-qwen2", lambda d: tiny.save_base(d, "qwen2"))


@pytest.fixture(scope="session")
def trained_qwen2_adapter(tiny_qwen2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A healthy LoRA adapter trained for a few steps on the tiny Qwen2."""
    return _fixture_dir(tmp_path_factory, "adapter-qwen2",
                        lambda d: tiny.train_toy_adapter(tiny_qwen2, d), sub="adapter")
