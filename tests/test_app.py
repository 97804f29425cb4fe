"""The Streamlit app (examples/streamlit_app.py) on a tiny model, driven by AppTest."""

from __future__ import annotations

from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "examples" / "streamlit_app.py"


def test_app_shows_status_and_side_by_side_outputs(
    tiny_llama: Path, trained_adapter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    testing = pytest.importorskip("streamlit.testing.v1")
    monkeypatch.setenv("FTDIAG_APP_BASE", str(tiny_llama))
    monkeypatch.setenv("FTDIAG_APP_ADAPTER", str(trained_adapter))
    at = testing.AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    assert any("Adapter status" in s.value for s in at.subheader)
    at.text_input(key="title").input("Steel bottle")
    at.button(key="generate").click()
    at.run()
    assert not at.exception, at.exception
    labels = [m.value for m in at.markdown]
    assert "**base**" in labels and "**adapter**" in labels
    texts = [c.value for c in at.code]
    assert len(texts) == 2 and texts[0] != texts[1]
