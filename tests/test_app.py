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
    blocks = [h.value for h in at.html]
    assert len(blocks) == 3  # base, adapter, diff
    assert all("class='ftdiag-output'" in b and "overflow-wrap:anywhere" in b for b in blocks)
    assert blocks[0] != blocks[1] and not at.code
    table = at.table[0].value
    assert list(table["code"]) == ["R001", "R002", "R003", "R004", "R005", "R006", "R008", "R009"]
    assert table["check"][0] == "adapter injected"  # R001 passes: what it proved
    from ftdiag.findings import CODES

    for code, check, status in zip(table["code"], table["check"], table["status"], strict=True):
        if "pass" in status:  # a tick never sits beside the fault's title
            assert CODES[code].title not in check and check == CODES[code].proves, (code, check)
    assert all("material/" in s for s in table["status"])  # icons from Streamlit's own font
