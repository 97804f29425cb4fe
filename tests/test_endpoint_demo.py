"""demo --serve's serving step on tiny models: the export passes, the base under its name fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftdiag.demo.serve import run_serve_demo
from ftdiag.prompts.records import Record


def test_serve_demo_passes_the_export_and_catches_the_wrong_name(
        tiny_llama: Path, trained_adapter: Path, tmp_path: Path) -> None:
    pytest.importorskip("fastapi", reason="needs the serve extra: pip install -e '.[serve]'")
    demo = run_serve_demo(trained_adapter, str(tiny_llama),
                          [Record("Steel bottle"), Record("USB cable")], tmp_path,
                          max_new_tokens=8)
    assert demo.report.verdict == "pass", [c.message for c in demo.report.checks]
    healthy = {c.code: c.status for c in demo.healthy.report.checks if c.code.startswith("E")}
    assert healthy == {"E001": "pass", "E002": "pass", "E003": "pass", "E004": "pass",
                       "E005": "pass"}
    assert demo.wrong.report.codes() >= {"E001", "E002"}
    assert demo.wrong.reference is demo.healthy.reference  # the local pair ran once
    assert demo.healthy.summary is not None and demo.healthy.summary.url == demo.url
    assert demo.url.startswith("http://127.0.0.1:")
