"""Render a DoctorResult: Rich for people, Markdown to share (HTML: render.doctor_html)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ftdiag.abtest.local import ABRow
from ftdiag.doctor.run import DoctorResult
from ftdiag.render.findings import checks_table, mark, passed_line, verdict_text
from ftdiag.render.text import checks_markdown


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
    if result.sections.ab is not None:
        dt = result.sections.ab.summary.dtype
        console.print(Text(f"dtype: {dt.dtype}, both arms: {dt.reason}", style="dim"))
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
    lines += ["", "## Checks", "", *checks_markdown(rep.checks)]
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
