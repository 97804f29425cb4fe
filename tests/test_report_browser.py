"""doctor's HTML report in a real Chromium (Playwright): the page a user attaches to a bug report.

A tiny run trained by ftdiag's own recipe (the real Trainer logs train and eval loss and the
learning rate), then `ftdiag doctor RUN --report`. What the page must show is read from the run's
own files (trainer_state.json, the training examples) and from findings.CODES, never from the
renderer. Skipped without `playwright` or a system Chromium (`make test-browser` installs both).
FTDIAG_REPORT_RUN=RUN_DIR with FTDIAG_REPORT_HTML=PAGE checks an existing report instead (the
demo's); FTDIAG_REPORT_SHOT=PATH saves the screenshot there (docs/doctor-report.png).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _train_helpers import toy_records, write_jsonl
from typer.testing import CliRunner

from ftdiag.cli.app import app
from ftdiag.findings import CODES

sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("matplotlib")

CHROMIUM = os.environ.get("FTDIAG_CHROMIUM") or shutil.which("chromium") or shutil.which(
    "chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium (make test-browser)")]


@pytest.fixture(scope="module")
def report(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run dir, report.html): a 16-step tiny run and its doctor report, or the user's."""
    if os.environ.get("FTDIAG_REPORT_RUN"):
        return Path(os.environ["FTDIAG_REPORT_RUN"]), Path(os.environ["FTDIAG_REPORT_HTML"])
    from ftdiag.training.recipe import TrainConfig, train

    root = tmp_path_factory.mktemp("report")
    data = write_jsonl(root / "trn.json", toy_records(48))
    run = root / "run"
    train(TrainConfig(data=data, out=run, base=str(tiny_llama), lr=3e-2, lora_r=8, lora_alpha=16,
                      lora_dropout=0.0, batch_size=8, max_steps=16, eval_steps=4,
                      logging_steps=1, max_length=96, eval_share=0.2,
                      target_modules=["q_proj", "v_proj", "down_proj", "lm_head"]))
    page = root / "report.html"
    res = CliRunner().invoke(app, ["doctor", str(run), "--n", "4", "--max-new-tokens", "24",
                                   "--report", str(page)])
    assert res.exit_code in (0, 1), res.output
    return run, page


@pytest.fixture(scope="module")
def page(report: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 1000}, offline=True)
        try:
            pg = browser.new_page()
            pg.goto(report[1].resolve().as_uri())
            yield pg
        finally:
            browser.close()


# the text of a <pre> before its first-divergent-token mark (null without one)
BEFORE_MARK = """p => { const m = p.querySelector('mark.first-diff'); if (!m) return null;
  const r = document.createRange(); r.setStart(p, 0); r.setEndBefore(m); return r.toString(); }"""
VERTICES = "(sel) => [...document.querySelectorAll(sel)].map(p => (p.getAttribute('d') || '')" \
           ".match(/[ML]/g)?.length || 0)"


def test_the_loss_curve_is_drawn_with_every_logged_point(page: Any, report: tuple[Path, Path]
                                                         ) -> None:
    history = json.loads((report[0] / "trainer_state.json").read_text())["log_history"]
    train = sum("loss" in r for r in history)
    evals = sum("eval_loss" in r for r in history)
    lrs = sum("learning_rate" in r for r in history)
    assert train > 1 and evals > 1 and lrs > 1, "the run logged no curve"
    plot = page.locator("figure[data-plot='loss'] svg")
    assert plot.is_visible() and plot.bounding_box()["width"] > 400
    assert page.evaluate(VERTICES, "#ftdiag-train path") == [min(train, 400)]
    assert page.evaluate(VERTICES, "#ftdiag-lr path") == [min(lrs, 400)]
    assert page.locator("#ftdiag-eval use").count() == min(evals, 400)  # one marker per eval
    assert "learning rate" in (plot.text_content() or "")
    assert page.locator("script").count() == 0


def test_every_tick_sits_next_to_what_it_proves(page: Any) -> None:
    rows = page.locator("tr.check")
    assert rows.count() > 20
    passing = 0
    for row in rows.all():
        code, status = row.get_attribute("data-code"), row.get_attribute("data-status")
        cells = [c.inner_text().strip() for c in row.locator("td").all()]
        info = CODES[code]
        if status in ("pass", "skip"):
            passing += status == "pass"
            assert cells[0] == ("✓" if status == "pass" else "–"), cells
            assert cells[2] == info.proves, f"{code} {status} is labelled {cells[2]!r}"
            name = " ".join(cells[:3]).replace(info.proves, "")  # the evidence may quote it
            assert info.title not in name and info.name not in name, f"{code} {status}: {cells}"
        else:
            assert cells[2] == info.title, cells
    assert passing > 20


def test_each_title_shows_where_the_texts_part_and_the_reference(
        page: Any, report: tuple[Path, Path]) -> None:
    refs = {}
    for name in ("train_examples.jsonl", "eval_examples.jsonl"):
        path = report[0] / name
        if path.is_file():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            refs.update({r["title"]: r["content"] for r in rows})
    sections = page.locator("section.title")
    assert sections.count() >= 2
    differing = 0
    for sec in sections.all():
        title = sec.locator("h3").inner_text().split(". ", 1)[1]
        arm = {a: sec.locator(f"[data-arm='{a}'] pre").first for a in ("base", "adapter")}
        base, adapter = arm["base"].text_content(), arm["adapter"].text_content()
        if title in refs:
            assert sec.locator("[data-arm='reference'] pre").text_content() == refs[title]
        if base == adapter:
            continue
        differing += 1
        # the marked word: the same text before it in both arms, and the texts differ from there
        before = [arm[a].evaluate(BEFORE_MARK) for a in ("base", "adapter")]
        assert None not in before, f"{title}: the first divergent token is not marked"
        assert before[0] == before[1] and base[len(before[0]):] != adapter[len(before[1]):]
        assert base.startswith(before[0]) and adapter.startswith(before[0])
        diff = sec.locator(".diff pre").first
        assert diff.locator("ins, del").count() > 0
        without = "(p, tag) => { const c = p.cloneNode(true); " \
                  "c.querySelectorAll(tag).forEach(e => e.remove()); return c.textContent; }"
        assert diff.evaluate(without, "del") == adapter  # base -> adapter, word by word
        assert diff.evaluate(without, "ins") == base
        metrics = sec.locator("table.metrics").inner_text()
        if title in refs:
            assert "ROUGE-L" in metrics and "NLL" in metrics
    assert differing >= 1
    chart = page.locator("figure[data-plot='divergence'] svg")
    assert chart.is_visible()
    assert page.locator("[id^='ftdiag-tokens-']").count() == sections.count()


def test_screenshot(page: Any, tmp_path: Path) -> None:
    page.set_viewport_size({"width": 1100, "height": 1000})
    shot = tmp_path / "doctor-report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    if os.environ.get("FTDIAG_REPORT_SHOT"):  # for the docs: 256 colours, a third the bytes
        from PIL import Image

        Image.open(shot).quantize(256).save(os.environ["FTDIAG_REPORT_SHOT"], optimize=True)
