"""Text primitives shared by the file renderers: Markdown cells, HTML page style, XML-safe text."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html import escape
from typing import Any

from ftdiag.findings import Finding, Report

_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str | None) -> str:
    """Text with the characters XML 1.0 cannot hold (model output has them) replaced."""
    return _NOT_XML.sub("\ufffd", text or "")


def cell(text: Any) -> str:
    """Text made safe for one Markdown table cell."""
    s = "–" if text is None else f"{text:.3f}" if isinstance(text, float) else str(text)
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip() or "–"


def block(text: str) -> str:
    """Text in a fenced block that its own backticks cannot close."""
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}text\n{text}\n{fence}"


CSS = """
body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}
h1 .pass{color:#1a7f37}h1 .warn{color:#9a6700}h1 .fail{color:#cf222e}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ddd;padding:.3rem .6rem;
vertical-align:top;text-align:left}th{background:#f6f8fa}td.num{text-align:right}
.st-pass{color:#1a7f37}.st-warn{color:#9a6700}.st-fail{color:#cf222e;font-weight:bold}
.st-skip,.st-info{color:#57606a}
.title{border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
.title.same{border-color:#cf222e}.arms{display:grid;grid-template-columns:1fr 1fr;gap:1rem}
.arms pre,.ref{white-space:pre-wrap;background:#f6f8fa;padding:.5rem;margin:0;font-size:.9rem}
del{background:#ffebe9;color:#82071e}ins{background:#dafbe1;color:#116329;text-decoration:none}
.dim{color:#57606a}
"""


def h(value: Any) -> str:
    """Escaped text (numbers formatted)."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return escape(xml_safe(str(value)))


def checks_html(report: Report) -> str:
    """Every check of a report as one HTML table (status, code, label, evidence, hint)."""
    rows = "".join(
        f'<tr><td class="st-{c.status}">{h(c.status)}</td><td>{h(c.code)}</td>'
        f"<td>{h(c.label)}</td><td>{h(c.evidence_text)}</td><td class=dim>{h(c.hint)}</td></tr>"
        for c in report.checks)
    return ("<table><tr><th>status</th><th>code</th><th>check</th><th>evidence</th>"
            f"<th>hint</th></tr>{rows}</table>")


def checks_suite(report: Report, name: str) -> ET.Element:
    """A JUnit <testsuite> with one case per check: fail -> failure, skip -> skipped."""
    suite = ET.Element("testsuite", name=name)
    failures = skipped = 0
    for c in report.checks:
        case = ET.SubElement(suite, "testcase", classname=name,
                             name=xml_safe(f"{c.code} {c.label}"))
        if c.status == "fail":
            failures += 1
            ET.SubElement(case, "failure", type=c.code,
                          message=xml_safe(c.message)).text = xml_safe(c.hint)
        elif c.status == "skip":
            skipped += 1
            ET.SubElement(case, "skipped", message=xml_safe(c.evidence_text))
        else:
            ET.SubElement(case, "system-out").text = xml_safe(f"{c.status}: {c.message}")
    suite.set("tests", str(len(report.checks)))
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    return suite


def checks_markdown(checks: list[Finding]) -> list[str]:
    """Every check as a Markdown table: status, code, label, evidence, hint."""
    return ["| status | code | check | evidence | hint |", "|---|---|---|---|---|",
            *(f"| {c.status} | {c.code} | {cell(c.label)} | {cell(c.evidence_text)} | "
              f"{cell(c.hint)} |" for c in checks)]


DEL_STYLE = "background:#ffd7d5;color:#82071e"
INS_STYLE = "background:#ccffd8;color:#116329;text-decoration:none"


def word_diff_html(a: str, b: str) -> str:
    """`b` with words not in `a` in <ins> (green) and words of `a` it dropped in <del> (red).

    Inline styles: the same marks in the doctor report and the Streamlit app.
    """
    from ftdiag.generation.metrics import word_diff

    parts = []
    for op in word_diff(a, b):
        text = h(op.text)
        parts.append(text if op.op == "equal" else
                     f"<del style='{DEL_STYLE}'>{text}</del>" if op.op == "delete" else
                     f"<ins style='{INS_STYLE}'>{text}</ins>")
    return "".join(parts)
