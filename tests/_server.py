"""A real `transformers serve` (OpenAI-compatible) in a subprocess, serving local model folders.

One server per test session (ftdiag.demo.local_server); it is stopped by its PID.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ftdiag.demo.local_server import LocalServer, free_port, launch, stop, wait_ready

Server = LocalServer


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

    from ftdiag.export.merge import merge_adapter

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
    server = launch(tmp_path_factory.mktemp("server") / "serve.log")
    try:
        request.getfixturevalue("served_models")
        wait_ready(server)
        yield server
    finally:
        stop(server)


__all__ = ["ServedModels", "Server", "free_port", "openai_server", "served_models"]
