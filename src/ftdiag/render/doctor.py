"""Render a DoctorResult: Rich for people, Markdown and self-contained HTML to share."""

from __future__ import annotations

import html
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ftdiag.abtest.local import ABRow
from ftdiag.doctor.run import DoctorResult
from ftdiag.render.findings import checks_table, mark, passed_line, verdict_text


def _status(ok: bool | None) -> str:
    return "pass" if ok else ("skip" if ok is None else "fail")


def print_doctor(result: DoctorResult, console: Console) -> None:
    """Checks table, success-criteria checklist, ranked causes, verdict."""
    findings = result.report.findings
    if findings:
        console.print(checks_table(findings, title=f"doctor: {result.run_dir}"))
    else:
        console.print(f"doctor: {result.run_dir}: no findings")
    console.print(passed_line(result.report.checks))
    for w in result.sections.ab.summary.warnings if result.sections.ab else []:
        console.print(Text(f"warning: {w}", style="yellow"))
    table = Table(title="success criteria", title_justify="left")
    table.add_column("", width=1)
    table.add_column("criterion")
    table.add_column("evidence", overflow="fold")
    for i, c in enumerate(result.criteria, 1):
        table.add_row(mark(_status(c.ok)), f"{i}. {c.name}", c.evidence)
    console.print(table)
    samples = _rows(result)[:3]
    if samples:
        side = Table(title="base vs adapter (greedy, first titles)", title_justify="left")
        side.add_column("title", ratio=1)
        side.add_column("base", ratio=2, overflow="fold")
        side.add_column("adapter", ratio=2, overflow="fold")
        for r in samples:
            outs = r.outputs
            side.add_row(Text(r.title), Text(_clip(outs.get("base", ""))),
                         Text(_clip(outs.get("adapter", ""))))
        console.print(side)
    if result.causes:
        causes = Table(title="most likely causes", title_justify="left")
        causes.add_column("#", justify="right")
        causes.add_column("cause")
        causes.add_column("evidence", overflow="fold")
        causes.add_column("try next", style="cyan", overflow="fold")
        for rc in result.causes:
            causes.add_row(str(rc.rank), Text(rc.cause.title, style="bold"),
                           "\n".join(rc.evidence[:3]), rc.cause.next_step)
        console.print(causes)
    console.print(verdict_text(result.report))


def _clip(text: str, n: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n] + "…"


def _rows(result: DoctorResult) -> list[ABRow]:
    return result.sections.ab.rows if result.sections.ab is not None else []


def to_markdown(result: DoctorResult) -> str:
    """The whole diagnosis as Markdown."""
    rep = result.report
    lines = [f"# ftdiag doctor: `{result.run_dir}`", "", f"**Verdict: {rep.verdict.upper()}**", "",
             "## Success criteria", "", "| | criterion | evidence |", "|---|---|---|"]
    sym = {"pass": "✓", "fail": "✗", "skip": "–"}
    for i, c in enumerate(result.criteria, 1):
        lines.append(f"| {sym[_status(c.ok)]} | {i}. {c.name} | {_md(c.evidence)} |")
    if result.causes:
        lines += ["", "## Most likely causes", ""]
        for rc in result.causes:
            lines.append(f"{rc.rank}. **{rc.cause.title}** ({rc.severity}) — "
                         f"{_md('; '.join(rc.evidence[:3]))}  \n   Try: `{rc.cause.next_step}`")
    lines += ["", "## Checks", "", "| status | code | check | evidence | hint |",
              "|---|---|---|---|---|"]
    for f in rep.checks:
        cells = [f.status, f.code, _md(f.title), _md(f.message), _md(f.hint)]
        lines.append("| " + " | ".join(cells) + " |")
    rows = _rows(result)
    if rows:
        lines += ["", "## Base vs adapter (greedy)", ""]
        for r in rows:
            outs = r.outputs
            lines += [f"### {_md(r.title)}", ""]
            for arm, text in outs.items():
                lines += [f"**{arm}**:", "", "```text", str(text), "```", ""]
    return "\n".join(lines) + "\n"


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;width:100%;margin:1em 0}td,th{border:1px solid #ddd;padding:4px 8px;
vertical-align:top;text-align:left}th{background:#f4f4f4}.pass{color:#1a7f37}.fail{color:#cf222e}
.warn{color:#9a6700}.info{color:#0969da}.skip{color:#888}pre{white-space:pre-wrap;background:#f7f7f7;
padding:8px;margin:0}.verdict{font-size:1.4em;font-weight:bold}.arms{display:grid;
grid-template-columns:1fr 1fr;gap:8px}"""


def to_html(result: DoctorResult) -> str:
    """The whole diagnosis as one self-contained HTML page (inline CSS, all text escaped)."""
    e = html.escape
    rep = result.report
    sym = {"pass": "✓", "fail": "✗", "skip": "–", "warn": "⚠", "info": "ℹ"}
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>ftdiag doctor</title>"
           f"<style>{CSS}</style></head><body>",
           f"<h1>ftdiag doctor: <code>{e(str(result.run_dir))}</code></h1>",
           f"<p class='verdict {rep.verdict}'>Verdict: {rep.verdict.upper()}</p>",
           "<h2>Success criteria</h2><table><tr><th></th><th>criterion</th><th>evidence</th></tr>"]
    for i, c in enumerate(result.criteria, 1):
        st = _status(c.ok)
        out.append(f"<tr><td class='{st}'>{sym[st]}</td><td>{i}. {e(c.name)}</td>"
                   f"<td>{e(c.evidence)}</td></tr>")
    out.append("</table>")
    if result.causes:
        out.append("<h2>Most likely causes</h2><ol>")
        for rc in result.causes:
            out.append(f"<li><b>{e(rc.cause.title)}</b> <span class='{rc.severity}'>"
                       f"({rc.severity})</span><br>{e('; '.join(rc.evidence[:3]))}<br>"
                       f"Try: <code>{e(rc.cause.next_step)}</code></li>")
        out.append("</ol>")
    out.append("<h2>Checks</h2><table><tr><th></th><th>code</th><th>check</th><th>evidence</th>"
               "<th>hint</th></tr>")
    for f in rep.checks:
        out.append(f"<tr><td class='{f.status}'>{sym.get(f.status, '?')}</td><td>{e(f.code)}</td>"
                   f"<td>{e(f.title)}</td><td>{e(f.message)}</td><td>{e(f.hint)}</td></tr>")
    out.append("</table>")
    rows = _rows(result)
    if rows:
        out.append("<h2>Base vs adapter (greedy)</h2>")
        for r in rows:
            out.append(f"<h3>{e(r.title)}</h3><div class='arms'>")
            for arm, text in r.outputs.items():
                out.append(f"<div><b>{e(arm)}</b><pre>{e(str(text))}</pre></div>")
            out.append("</div>")
    out.append("</body></html>")
    return "\n".join(out)
