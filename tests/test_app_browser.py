"""The Streamlit app in a real Chromium (Playwright), on a tiny model: what a user sees.

Skipped without `playwright` (the `browser` extra) or a system Chromium; `make test-browser`
installs both. FTDIAG_APP_SHOT=PATH also saves the page screenshot there (docs/app.png).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("streamlit")

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "examples" / "streamlit_app.py"
CHROMIUM = os.environ.get("FTDIAG_CHROMIUM") or shutil.which("chromium") or shutil.which(
    "chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium (make test-browser)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def app_paths(tiny_llama: Path, trained_adapter: Path,
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Base, trained adapter and its merged model, or the user's (FTDIAG_APP_*) when set."""
    if os.environ.get("FTDIAG_APP_ADAPTER"):
        env = {k: os.environ.get(f"FTDIAG_APP_{k.upper()}", "") for k in ("base", "adapter",
                                                                          "merged")}
        return {k: v for k, v in env.items() if v}
    from ftdiag.export.merge import merge_adapter

    merged = tmp_path_factory.mktemp("merged") / "merged"
    assert merge_adapter(trained_adapter, str(tiny_llama), merged).verdict == "pass"
    return {"base": str(tiny_llama), "adapter": str(trained_adapter), "merged": str(merged)}


@pytest.fixture(scope="module")
def app_url(app_paths: dict[str, str], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[str]:
    """`streamlit run examples/streamlit_app.py` on a free port, stopped afterwards."""
    port = _free_port()
    log = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    env = {**os.environ, **{f"FTDIAG_APP_{k.upper()}": v for k, v in app_paths.items()},
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless=true",
             f"--server.port={port}", "--server.address=127.0.0.1",
             "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"streamlit did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def page(app_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 1700})
        try:
            pg = browser.new_page()
            pg.set_default_timeout(180_000)
            pg.goto(app_url)
            yield pg
        finally:
            browser.close()


def _emoji(text: str) -> list[str]:
    """Characters that need an emoji font (pictographs, dingbats, variation selector 16)."""
    return [c for c in text if 0x2600 <= ord(c) <= 0x27BF or 0x2B00 <= ord(c) <= 0x2BFF
            or ord(c) >= 0x1F000 or c == "\ufe0f"]


MATERIAL_LOADED = ("[...document.fonts].some(f => f.family.includes('Material Symbols') "
                   "&& f.status === 'loaded')")
# Every visible line of `el`'s text lies inside `el`, and `el` does not scroll.
FULLY_VISIBLE = """el => {
  const box = el.getBoundingClientRect(), range = document.createRange();
  range.selectNodeContents(el);
  const lines = [...range.getClientRects()];
  return {scrollW: el.scrollWidth, clientW: el.clientWidth, scrollH: el.scrollHeight,
          clientH: el.clientHeight, overflowX: getComputedStyle(el).overflowX,
          outside: lines.filter(r => r.width > 0 && (r.left < box.left - 1 ||
                   r.right > box.right + 1 || r.bottom > box.bottom + 1)).length,
          viewportW: document.documentElement.clientWidth, right: box.right};
}"""


@pytest.fixture(scope="module")
def expected_rows(app_paths: dict[str, str]) -> list[tuple[str, str, str]]:
    """(code, label, evidence prefix) the status table must show for a healthy adapter.

    Not computed by ftdiag: the adapter is a trained one loaded as PeftModel's 'default' in eval
    mode with its base's tokenizer, so every R check the app runs (R007 is merge-only) must
    pass, under the name of what it proves; the counts are read from the adapter file with
    safetensors itself (one LoRA layer per lora_A tensor; R006 compares every LoRA tensor).
    """
    from safetensors import safe_open

    with safe_open(str(Path(app_paths["adapter"]) / "adapter_model.safetensors"), "np") as f:
        keys = [k for k in f.keys() if ".lora_A." in k or ".lora_B." in k]  # noqa: SIM118
    layers = sum(".lora_A." in k for k in keys)
    assert layers > 0 and len(keys) == 2 * layers
    return [("R001", "adapter injected", f"{layers} LoRA layers injected"),
            ("R002", "adapter active", "enabled, active adapters ['default']"),
            ("R003", "eval mode", "eval mode, no active dropout"),
            ("R004", "base arm clean", "base arm is the base model: LoRA off, max |Δlogit| vs "
                                       "adapter "),
            ("R005", "adapter changes the logits", "max |Δlogit| "),
            ("R006", "loaded weights equal the file",
             f"adapter 'default': {len(keys)} tensors equal the file"),
            ("R008", "greedy decoding", "greedy decoding (do_sample=False)"),
            ("R009", "pad token differs from eos", "")]


def test_status_panel_names_passing_checks_neutrally(page: Any,
                                                      expected_rows: list[tuple[str, str, str]]
                                                      ) -> None:
    page.get_by_text("Adapter status: PASS").wait_for()
    table = page.locator("[data-testid='stTable']").first
    table.locator("tbody tr").nth(len(expected_rows) - 1).wait_for()
    rows = [[c.inner_text().strip() for c in r.locator("td").all()]
            for r in table.locator("tbody tr").all()]
    assert [r[1:3] for r in rows] == [[code, label] for code, label, _ in expected_rows]
    for row, (code, _, evidence) in zip(rows, expected_rows, strict=True):
        assert row[0].endswith("pass"), row  # icon, then the status in words
        assert row[3].startswith(evidence), (code, row[3])
    assert " != eos " in rows[-1][3]  # R009: pad '<…>' != eos '<…>'
    panel = page.locator("[data-testid='stExpander']").first.inner_text()
    assert not _emoji(panel), _emoji(panel)
    icons = table.locator("span[role='img']")  # :material/...: ligatures, one per row
    assert icons.count() == len(rows)
    assert "Material Symbols" in icons.first.evaluate("e => getComputedStyle(e).fontFamily")
    assert page.evaluate(MATERIAL_LOADED)


def test_outputs_are_fully_visible_without_scrolling(page: Any, app_paths: dict[str, str],
                                                     tmp_path: Path) -> None:
    arms = ["base", "adapter", "merged"] if "merged" in app_paths else ["base", "adapter"]
    page.get_by_text("Adapter status: PASS").wait_for()
    title = page.get_by_label("Product title")
    title.fill("Steel bottle")
    title.press("Enter")
    page.get_by_role("button", name="Generate").click()
    page.locator(".ftdiag-output[data-arm='diff']").wait_for()
    for arm in arms:
        assert page.get_by_text(arm, exact=True).first.is_visible()
    for arm in [*arms, "diff"]:
        el = page.locator(f".ftdiag-output[data-arm='{arm}']")
        text = el.text_content() or ""
        assert len(text) > 60, f"{arm}: {text!r}"  # longer than the old cut-off
        m = el.evaluate(FULLY_VISIBLE)
        assert m["scrollW"] <= m["clientW"] and m["scrollH"] <= m["clientH"], (arm, m)
        assert m["outside"] == 0 and m["right"] <= m["viewportW"], (arm, m)
        assert el.inner_text().split() == text.split(), arm  # nothing hidden inside
    # the shared model was not left with its adapter off by the base arm
    assert page.get_by_text("Adapter status: PASS").is_visible()
    page.wait_for_timeout(500)
    page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
    if os.environ.get("FTDIAG_APP_SHOT"):
        shutil.copyfile(tmp_path / "app.png", os.environ["FTDIAG_APP_SHOT"])
