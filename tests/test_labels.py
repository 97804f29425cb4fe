"""One vocabulary in every renderer: a pass is named by what it proves, a finding by its title.

For every code of the table a passing, a skipped and a failing check go through each renderer
(terminal table and training-callback line, HTML tables, Markdown, JUnit, --json). The fault's
words come from findings.CODES (its title and name): a passing or skipped row must not carry
them, a failing row must.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from html import unescape

import pytest
from rich.console import Console

from ftdiag.findings import CODES, Finding, Report, finding, passed
from ftdiag.render.callback import finding_line
from ftdiag.render.doctor_html import checks_html as doctor_checks_html
from ftdiag.render.findings import checks_table, passed_skipped_line
from ftdiag.render.jsondoc import to_json
from ftdiag.render.text import checks_html, checks_markdown, checks_suite

STATUSES = ("pass", "skip", "fail")


def _check(code: str, status: str) -> Finding:
    if status == "pass":
        return passed(code, "ran clean")
    if status == "skip":
        return Finding(code, "skip", "skipped: nothing to compare with")
    return finding(code, "evidence here", status="fail")


def _report() -> Report:
    rep = Report("test")
    rep.add(*(_check(code, st) for code in CODES for st in STATUSES))
    return rep


def _terminal(rep: Report) -> dict[tuple[str, str], str]:
    console = Console(width=400, record=True, color_system=None)
    console.print(checks_table(rep.checks))
    lines = [ln for ln in console.export_text().splitlines() if re.search(r"\b[A-Z]\d{3}\b", ln)]
    return _by_row(rep, lines)


def _callback(rep: Report) -> dict[tuple[str, str], str]:
    return _by_row(rep, [finding_line(c, "step 1").plain for c in rep.checks])


def _html_rows(page: str) -> list[str]:
    return [unescape(re.sub(r"<[^>]+>", " ", row)) for row in re.findall(r"<tr[^>]*>.*?</tr>",
                                                                          page)[1:]]


def _html(rep: Report) -> dict[tuple[str, str], str]:
    return _by_row(rep, _html_rows(checks_html(rep)))


def _doctor_html(rep: Report) -> dict[tuple[str, str], str]:
    return _by_row(rep, _html_rows(doctor_checks_html(rep.checks)))


def _markdown(rep: Report) -> dict[tuple[str, str], str]:
    return _by_row(rep, checks_markdown(rep.checks)[2:])


def _junit(rep: Report) -> dict[tuple[str, str], str]:
    suite = ET.fromstring(ET.tostring(checks_suite(rep, "t")))
    return _by_row(rep, [case.get("name", "") for case in suite.iter("testcase")])


def _json(rep: Report) -> dict[tuple[str, str], str]:
    doc = json.loads(to_json(rep))
    return {(c["code"], c["status"]): c["label"] for c in doc["checks"]}


def _by_row(rep: Report, rows: list[str]) -> dict[tuple[str, str], str]:
    assert len(rows) == len(rep.checks), rows[:3]
    return {(c.code, c.status): row for c, row in zip(rep.checks, rows, strict=True)}


RENDERERS: dict[str, Callable[[Report], dict[tuple[str, str], str]]] = {
    "terminal": _terminal, "callback": _callback, "html": _html, "doctor-html": _doctor_html,
    "markdown": _markdown, "junit": _junit, "json": _json}


@pytest.mark.parametrize("renderer", RENDERERS)
def test_no_renderer_shows_a_passing_check_under_its_fault(renderer: str) -> None:
    rows = RENDERERS[renderer](_report())
    for code, info in CODES.items():
        for status in ("pass", "skip"):
            row = rows[(code, status)]
            assert info.proves in row, f"{renderer}: {status} {code} does not say what it proves"
            rest = row.replace(info.proves, "")  # "no overfitting" holds L005's name
            assert info.title not in rest, f"{renderer}: {status} {code} reads as its fault: {row}"
            assert info.name not in rest, f"{renderer}: {status} {code} carries its name: {row}"
        assert info.title in rows[(code, "fail")], f"{renderer}: failing {code} lost its title"


def test_json_label_sits_beside_code_and_title() -> None:
    doc = json.loads(to_json(_report()))
    row = next(c for c in doc["checks"] if c["code"] == "R001" and c["status"] == "pass")
    assert (row["title"], row["label"]) == ("no trained LoRA layers in the model",
                                             "adapter injected")
    assert all(f["label"] == f["title"] for f in doc["findings"])


def test_skipped_checks_say_why_in_the_same_words_everywhere() -> None:
    rep = Report("test")
    rep.add(Finding("R006", "skip", "skipped: no adapter_dir to compare with"),
            Finding("L005", "skip", "no eval loss to compare with"))
    line = passed_skipped_line(rep).plain
    assert "R006 (no adapter_dir to compare with)" in line
    assert "L005 (no eval loss to compare with)" in line
    for why in ("skipped: no adapter_dir to compare with", "skipped: no eval loss to compare with"):
        assert why in checks_html(rep) and why in "\n".join(checks_markdown(rep.checks))
        assert why in ET.tostring(checks_suite(rep, "t"), encoding="unicode")
        assert why in "\n".join(_doctor_html(rep).values())
