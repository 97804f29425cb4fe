"""Shared fixtures: tiny random models built in-process, FTDIAG_CACHE in a temp dir."""

from __future__ import annotations

import os
import traceback
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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--write-schemas", action="store_true",
                     help="rewrite tests/schemas from this run (make schemas)")


def pytest_configure(config: pytest.Config) -> None:
    import _schema

    _schema.WRITE = bool(config.getoption("--write-schemas"))


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
    return tiny.save_base(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GPT-2 base model folder (Conv1D c_attn)."""
    return tiny.save_base(tmp_path_factory.mktemp("tiny-gpt2"), "gpt2")


@pytest.fixture(scope="session")
def trained_adapter(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A healthy LoRA adapter trained for a few steps on the tiny Llama."""
    return tiny.train_toy_adapter(tiny_llama, tmp_path_factory.mktemp("adapter") / "adapter")


@pytest.fixture(scope="session")
def trained_gpt2_adapter(tiny_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A healthy LoRA adapter trained for a few steps on the tiny GPT-2."""
    return tiny.train_toy_adapter(tiny_gpt2, tmp_path_factory.mktemp("adapter-gpt2") / "adapter")


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 base model folder (q/k/v bias, tied embeddings)."""
    return tiny.save_base(tmp_path_factory.mktemp("tiny-qwen2"), "qwen2")


@pytest.fixture(scope="session")
def trained_qwen2_adapter(tiny_qwen2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A healthy LoRA adapter trained for a few steps on the tiny Qwen2."""
    return tiny.train_toy_adapter(tiny_qwen2, tmp_path_factory.mktemp("adapter-qwen2") / "adapter")
