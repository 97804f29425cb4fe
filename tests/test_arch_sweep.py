"""Every decoder-only family of the installed transformers, built tiny from its own config class:
a healthy all-linear adapter passes check-adapter, its untrained twin is A003, and ab-test's texts
equal HF generate's for base and adapter on one left-padded batch of prompts of different lengths.

The families come from transformers' auto mappings (tests/_arch.py); the sweep runs in a process
pool started once for the module, each test waiting for its own family. A family that cannot be
built and run tiny here is skipped with the reason; one that is not decoder-only is listed too.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import pytest
from _arch import FamilyResult, families, markdown, run_family

FAMILIES, NOT_DECODER_ONLY = families()


@pytest.fixture(scope="module")
def sweep(request: pytest.FixtureRequest) -> Iterator[dict[str, Future[FamilyResult]]]:
    """The selected families' stories, submitted at once to one worker per CPU core."""
    chosen = [item.callspec.params["family"] for item in request.session.items
              if getattr(item, "originalname", "") == "test_family_story"]
    context = multiprocessing.get_context("spawn")  # fresh interpreters, no forked torch state
    with ProcessPoolExecutor(os.cpu_count() or 2, mp_context=context) as pool:
        futures = {family: pool.submit(run_family, family) for family in chosen}
        yield futures
        for future in futures.values():
            future.cancel()
    if out := os.environ.get("FTDIAG_ARCH_PAGE"):  # make arch-page: docs/architectures.md
        done = [f.result() for f in futures.values() if f.done() and not f.cancelled()]
        Path(out).write_text(markdown(done, NOT_DECODER_ONLY), encoding="utf-8")


@pytest.mark.parametrize("family", FAMILIES)
def test_family_story(family: str, sweep: dict[str, Future[FamilyResult]],
                      request: pytest.FixtureRequest) -> None:
    result = sweep[family].result()
    request.node.user_properties += [("seconds", round(result.seconds, 1)),
                                     ("fast_path", result.fast_path)]
    if result.skipped:
        pytest.skip(f"{family}: {result.skipped}")
    assert not result.problems, "\n".join(result.problems)


@pytest.mark.parametrize("family", sorted(NOT_DECODER_ONLY))
def test_not_decoder_only(family: str) -> None:
    pytest.skip(f"{family}: {NOT_DECODER_ONLY[family]}")
