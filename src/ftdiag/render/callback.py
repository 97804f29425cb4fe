"""FtdiagCallback's lines on stderr, between the trainer's logs: one per finding, one for passes."""

from __future__ import annotations

from rich.text import Text

from ftdiag.findings import Finding
from ftdiag.render.console import err
from ftdiag.render.findings import MARKS


def finding_line(check: Finding, where: str) -> Text:
    """`✗ ftdiag L009 no LoRA gradient after step 1 [step 1]: message → hint`."""
    symbol, style = MARKS.get(check.status, ("?", ""))
    line = Text(f"{symbol} ftdiag ", style=style)
    line.append(check.code, style="bold")
    line.append(f" {check.label}")
    line.append(f" [{where}]", style="dim")
    line.append(f": {check.message}")
    if check.hint and check.is_finding:
        line.append(f" → {check.hint}", style="dim")
    return line


def passed_line(checks: list[Finding], where: str) -> Text:
    """`✓ ftdiag [checkpoint-6] 9 checks passed: A001 A002 ...` (a single pass keeps its words)."""
    if len(checks) == 1:
        return finding_line(checks[0], where)
    codes = " ".join(sorted({c.code for c in checks}))
    line = Text("✓ ftdiag ", style="green")
    line.append(f"[{where}]", style="dim")
    line.append(f" {len(checks)} checks passed: {codes}")
    return line


def print_checks(checks: list[Finding], where: str) -> None:
    """Findings one line each (worst first), then the passing checks in one line."""
    order = {"fail": 0, "warn": 1, "info": 2, "skip": 3}
    for check in sorted((c for c in checks if c.status != "pass"), key=lambda c: order[c.status]):
        err().print(finding_line(check, where))
    passes = [c for c in checks if c.status == "pass"]
    if passes:
        err().print(passed_line(passes, where))
