"""Converting the embedded GGUF in a fresh cache: no stray tqdm bar in the user's terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftdiag.model.load import resolve_model_dir


@pytest.mark.slow
def test_gguf_conversion_prints_no_progress_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FTDIAG_CACHE", str(tmp_path))  # force the conversion
    out = resolve_model_dir("smollm2-135m")
    assert (out / "config.json").is_file() and out.parent == tmp_path
    captured = capfd.readouterr()
    assert "de-quantizing" not in captured.err + captured.out
