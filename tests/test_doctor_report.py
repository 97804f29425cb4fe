"""doctor's HTML report without a model: the loss plot and its marks, the A/B review of a title.

The page in a real Chromium is tests/test_report_browser.py.
"""

from __future__ import annotations

import json
import re
import sys
from html import unescape
from pathlib import Path

import pytest
from _loss_helpers import write_run

from ftdiag.abtest.local import ABRow
from ftdiag.doctor.run import DoctorResult
from ftdiag.findings import Report
from ftdiag.loss.analysis import loss_report
from ftdiag.render.doctor_html import FOLD_CHARS, title_html, to_html

pytest.importorskip("matplotlib")


def _group(svg: str, gid: str) -> str:
    m = re.search(rf'<g id="{gid}">(.*?)</g>', svg, re.S)
    assert m, f"no {gid} in the plot"
    return m.group(1)


def _vertices(group: str) -> int:
    d = re.search(r'\sd="([^"]+)"', group)
    assert d
    return len(re.findall(r"[ML]", d.group(1)))


def _doctor(run: Path) -> DoctorResult:
    result = DoctorResult(Report("doctor"), run, None)
    result.sections.loss = loss_report([run])
    result.report.add(*result.sections.loss.checks)
    return result


def test_loss_plot_has_every_point_and_the_learning_rate(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", "healthy", n=120)
    history = json.loads((run / "trainer_state.json").read_text())["log_history"]
    page = to_html(_doctor(run))
    svg = re.search(r"<figure class=plot data-plot='loss'>(<svg.*?</svg>)", page, re.S)
    assert svg, "no loss plot in the report"
    assert _vertices(_group(svg[1], "ftdiag-train")) == sum("loss" in r for r in history)
    assert _vertices(_group(svg[1], "ftdiag-lr")) == sum("learning_rate" in r for r in history)
    evals = _group(svg[1], "ftdiag-eval")
    assert evals.count("<use ") == sum("eval_loss" in r for r in history)
    assert "<script" not in page  # one self-contained file: nothing to fetch, nothing to run
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)


@pytest.mark.parametrize(("kind", "eval_kind", "code", "mark", "words"), [
    ("flat", "ok", "L002", "ftdiag-last-third", "L002 last third flat"),
    ("diverging", "ok", "L003", "ftdiag-last-third", "last third rising"),
    ("spike", "ok", "L003", "ftdiag-L003-spikes", "L003 spike"),
    ("healthy", "overfitting", "L005", "ftdiag-L005-turn", "L005 eval turns up after step 80"),
])
def test_loss_findings_are_marked_where_they_apply(tmp_path: Path, kind: str, eval_kind: str,
                                                    code: str, mark: str, words: str) -> None:
    result = _doctor(write_run(tmp_path / "run", kind, eval_kind=eval_kind))
    assert code in result.report.codes()  # the finding fired ...
    page = to_html(result)
    assert f'id="{mark}"' in page and words in page  # ... and the plot shows where
    if kind == "spike":  # a spike on a falling curve: no rising last third drawn
        assert "ftdiag-last-third" not in page
    healthy = to_html(_doctor(write_run(tmp_path / "ok", "healthy")))
    assert not re.search(r'id="ftdiag-(L\d|last-third)', healthy)


def test_without_matplotlib_the_report_says_how_to_get_the_plot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    page = to_html(_doctor(write_run(tmp_path / "run", "healthy")))
    assert "<svg" not in page
    assert "pip install &#x27;ftdiag[plot]&#x27;" in page


def _text(fragment: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", fragment))


def _row(base: str, adapter: str, first: int | None = 3) -> ABRow:
    return ABRow("Steel bottle", "A steel bottle that keeps water cold.", "prompt",
                 {"base": base, "adapter": adapter}, {"base": 9, "adapter": 8},
                 {"base": False, "adapter": False}, first, base == adapter,
                 rouge_l={"base": 0.125, "adapter": 0.75}, ref_nll={"base": 4.5, "adapter": 1.25})


def test_a_title_reads_like_a_review() -> None:
    base, adapter = "A bottle for water and more water.", "A bottle that keeps water cold."
    page = title_html(1, _row(base, adapter))
    marks = re.findall(r"<mark class=first-diff[^>]*>(.*?)</mark>", page)
    assert marks == ["for", "that"]  # the word where the texts part, in base and in adapter
    diff = re.search(r"<div class=diff>.*?<pre>(.*?)</pre>", page, re.S)
    assert diff and "<ins" in diff[1] and "<del" in diff[1]
    assert _text(re.sub(r"<del[^>]*>.*?</del>", "", diff[1])) == adapter  # base -> adapter
    assert _text(re.sub(r"<ins[^>]*>.*?</ins>", "", diff[1])) == base
    assert "A steel bottle that keeps water cold." in page  # the reference
    for value in ("0.125", "0.750", "4.500", "1.250"):  # ROUGE-L and NLL per arm
        assert f"<td class=num>{value}</td>" in page


def test_identical_titles_are_flagged_and_long_outputs_fold() -> None:
    same = title_html(2, _row("Same text.", "Same text.", None))
    assert "identical" in same and "first-diff" not in same and "<ins" not in same
    long = "word " * (FOLD_CHARS // 4)
    folded = title_html(3, _row(long + "end.", long + "stop."))
    assert folded.count("<details>") == 3  # base, adapter, diff; the short reference stays open
    assert "<summary>" in folded and "click to open" in folded
