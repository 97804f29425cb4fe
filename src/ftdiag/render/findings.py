"""Rich rendering of any Report: one row per check, then the verdict line."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ftdiag.findings import SKIPPED, Finding, Report
from ftdiag.render.jsondoc import error_json, to_json

__all__ = ["error_json", "to_json"]  # re-exported: their home is render.jsondoc

MARKS = {"pass": ("✓", "green"), "info": ("ℹ", "cyan"), "warn": ("⚠", "yellow"),
         "fail": ("✗", "red"), "skip": ("–", "dim")}
VERDICT_STYLE = {"pass": "bold green", "warn": "bold yellow", "fail": "bold red"}


def mark(status: str) -> Text:
    symbol, style = MARKS.get(status, ("?", ""))
    return Text(symbol, style=style)


def checks_table(checks: list[Finding], title: str | None = None) -> Table:
    """Table of checks: mark, code, check, evidence, hint."""
    table = Table(title=title, show_lines=False, expand=False, title_justify="left")
    table.add_column("", width=1)
    table.add_column("code", style="bold", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("evidence → hint", overflow="fold", ratio=1)
    for f in checks:
        evidence = Text(f.evidence_text)
        if f.hint:
            evidence.append(f"\n→ {f.hint}", style="dim")
        table.add_row(mark(f.status), f.code, Text(f.label), evidence)
    return table


def passed_line(checks: list[Finding]) -> Text:
    """A line naming the checks that passed, then one for those skipped and why (long reports)."""
    codes = sorted({f.code for f in checks if f.status == "pass"})
    text = Text(f"✓ {len(codes)} checks passed: ", style="green")
    text.append(" ".join(codes), style="dim")
    skipped = skipped_text(checks)
    if skipped:
        text.append(f"\n– {skipped}", style="dim")
    return text


def verdict_text(report: Report) -> Text:
    v = report.verdict
    counts = {s: sum(1 for f in report.checks if f.status == s) for s in ("fail", "warn", "info")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no findings"
    text = Text("verdict: ", style="bold")
    text.append(v.upper(), style=VERDICT_STYLE[v])
    text.append(f"  ({summary}; {len(report.checks)} checks")
    if report.layers_skipped:
        skipped = "; ".join(f"{k} skipped: {why}" for k, why in report.layers_skipped.items())
        text.append(f"; {skipped}")
    text.append(")")
    return text


def print_report(report: Report, console: Console, title: str | None = None) -> None:
    """The standard report: checks table then verdict line."""
    if report.checks:
        console.print(checks_table(report.checks, title))
    console.print(verdict_text(report))


def findings_table(report: Report) -> Table | None:
    """Findings (info/warn/fail) as a table; None when every check passed."""
    rows = [c for c in report.checks if c.is_finding]
    return checks_table(rows, "findings") if rows else None


def passed_skipped_line(report: Report) -> Text:
    """One line: codes that passed, then codes skipped with why (each once)."""
    ok = [c.code for c in report.checks if c.status == "pass"]
    text = Text(f"passed: {' '.join(dict.fromkeys(ok)) or 'none'}", style="green")
    skipped = skipped_text(report.checks)
    if skipped:
        text.append(f"   {skipped}", style="dim")
    return text


def skipped_text(checks: list[Finding]) -> str:
    """`skipped: L005 (no eval loss to compare with); R006 (…)`: codes grouped by their why."""
    by_why: dict[str, list[str]] = {}
    for c in checks:
        if c.status == "skip":
            codes = by_why.setdefault(c.evidence_text.removeprefix(SKIPPED), [])
            if c.code not in codes:
                codes.append(c.code)
    return ("skipped: " + "; ".join(f"{' '.join(codes)} ({why})" for why, codes in by_why.items())
            if by_why else "")
