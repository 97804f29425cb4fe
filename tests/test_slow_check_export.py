"""check-export on the real embedded SmolLM2 Q4_1 GGUF: checked against its own base it is X001."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftdiag.export.check import check_export
from ftdiag.model.load import embedded_gguf_path
from ftdiag.testing import tiny

pytestmark = pytest.mark.slow


def test_embedded_gguf_against_its_converted_base_is_x001(tmp_path: Path) -> None:
    adapter = tiny.save_random_adapter("smollm2-135m", tmp_path / "adapter",
                                       target_modules=["q_proj", "k_proj", "v_proj", "down_proj"])
    report = check_export(embedded_gguf_path(), adapter, "smollm2-135m")
    details = report.details
    assert details.kind == "merged-gguf"  # type: ignore[attr-defined]
    x001 = next(c for c in report.checks if c.code == "X001")
    assert x001.status == "fail" and x001.evidence["modules"] == 4 * 30
    assert {m.dtype for m in details.modules} >= {"Q4_1"}  # type: ignore[attr-defined]
