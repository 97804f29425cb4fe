"""One stderr line per check as FtdiagCallback finds it, so it reads between the trainer's logs."""

from __future__ import annotations

from rich.text import Text

from ftdiag.findings import Finding
from ftdiag.render.console import err
from ftdiag.render.findings import MARKS, check_name


def print_check(check: Finding, where: str = "") -> None:
    """`✗ ftdiag L009 no LoRA gradient after step 1 [step 1]: message → hint`."""
    symbol, style = MARKS.get(check.status, ("?", ""))
    line = Text(f"{symbol} ftdiag ", style=style)
    line.append(check.code, style="bold")
    line.append(f" {check_name(check)}")
    if where:
        line.append(f" [{where}]", style="dim")
    line.append(f": {check.message}")
    if check.hint and check.is_finding:
        line.append(f" → {check.hint}", style="dim")
    err().print(line)
