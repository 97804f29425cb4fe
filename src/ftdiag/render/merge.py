"""Rich rendering of `ftdiag merge`: where the model went, the verification, the verdict."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from ftdiag.export.merge import MergeDetails
from ftdiag.findings import Report
from ftdiag.render.findings import findings_table, passed_skipped_line, verdict_text


def print_merge(report: Report, console: Console) -> None:
    """Where the merged model went, the verification, findings and verdict."""
    d = report.details
    if isinstance(d, MergeDetails):
        console.print(Text("merged model: ", style="bold").append(d.out))
        for note in d.notes:
            console.print(Text(f"note: {note}", style="yellow"))
    for c in report.checks:
        if c.code == "B002":
            console.print(Text(f"verify: {c.message}", style="green" if c.status == "pass"
                               else "bold red"))
    table = findings_table(report)
    if table is not None:
        console.print(table)
    console.print(passed_skipped_line(report))
    console.print(verdict_text(report))
