"""Rich rendering of an ab-test: per-title panels with a word diff, summary table, findings."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ftdiag.abtest import ABResult, ABRow
from ftdiag.compare import word_diff
from ftdiag.findings import Report
from ftdiag.render.findings import checks_table, verdict_text

ARM_STYLE = {"base": "cyan", "adapter": "magenta", "merged": "blue"}


def diff_texts(a: str, b: str) -> tuple[Text, Text]:
    """`a` with words missing from `b` struck in red, `b` with new words in green."""
    left, right = Text(), Text()
    for op in word_diff(a, b):
        if op.op == "equal":
            left.append(op.text)
            right.append(op.text)
        elif op.op == "delete":
            left.append(op.text, style="bold red strike")
        else:
            right.append(op.text, style="bold green")
    return left, right


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def row_panel(i: int, row: ABRow) -> Panel:
    """One title: each arm's text, base vs adapter word-diffed."""
    base, adapter = diff_texts(row.outputs["base"], row.outputs["adapter"])
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    texts = {"base": base, "adapter": adapter}
    for arm, text in row.outputs.items():
        shown = texts.get(arm, Text(text))
        label = Text(f"{arm} ({row.tokens[arm]} tok{', max' if row.hit_max[arm] else ''})",
                     style=ARM_STYLE.get(arm, ""))
        table.add_row(label, shown if shown.plain.strip() else Text("(empty)", style="dim"))
    if row.reference:
        table.add_row(Text("reference", style="dim"), Text(row.reference, style="dim"))
    if row.identical:
        status = Text("IDENTICAL", style="bold red")
    else:
        status = Text(f"differ from token {row.first_divergent_token}", style="green")
    title = Text(f"{i}. ", style="bold").append(row.title[:80])
    if row.truncated:
        title.append(" (truncated)", style="yellow")
    return Panel(Group(table), title=title, subtitle=status, title_align="left",
                 subtitle_align="right")


def summary_table(result: ABResult) -> Table:
    """Per-arm figures; identical count and divergence in the caption."""
    s = result.summary
    arms = list(s["mean_new_tokens"])
    table = Table(title="summary", title_justify="left")
    table.add_column("metric", style="bold")
    for arm in arms:
        table.add_column(arm, justify="right", style=ARM_STYLE.get(arm, ""))
    table.add_row("mean new tokens", *(fmt(s["mean_new_tokens"][a], 1) for a in arms))
    table.add_row("hit max_new_tokens", *(f"{s['hit_max_share'][a]:.0%}" for a in arms))
    for key, label in (("rouge_l", "ROUGE-L vs ref ↑"), ("token_f1", "token-F1 vs ref ↑"),
                       ("ref_nll", "ref NLL / token ↓")):
        if key in s:
            table.add_row(label, *(fmt(s[key].get(a)) for a in arms))
    div = s["first_divergent_token"]
    table.caption = (f"identical base/adapter: {s['identical']}/{s['n']} "
                     f"({s['identical_share']:.0%}); first divergent token: mean "
                     f"{fmt(div['mean'], 1)}, min {fmt(div['min'])}")
    return table


def gen_line(result: ABResult) -> Text:
    g = result.summary.get("generation_config", {})
    parts = ", ".join(f"{k}={v}" for k, v in g.items())
    text = Text("generation: ", style="bold").append(parts)
    over = result.summary.get("generation_overridden")
    if over:
        text.append(f"  (overrode model defaults {over})", style="dim")
    plan = result.summary.get("plan", {})
    if plan:
        how = ("one mixed batch, base rows = __base__" if plan["mixed_batch"]
               else "separate passes, base = disable_adapter()")
        text.append(f"\narms: {how}; {plan['generate_calls']} generate calls, "
                    f"{plan['rows']} rows", style="dim")
    return text


def print_ab(result: ABResult, console: Console, show: int | None = None) -> None:
    """Everything a person reads after `ftdiag ab-test`."""
    rows = result.rows if show is None else result.rows[:show]
    if result.rows:
        console.print(gen_line(result))
    for i, row in enumerate(rows, 1):
        console.print(row_panel(i, row))
    if show is not None and len(result.rows) > show:
        console.print(Text(f"… {len(result.rows) - show} more titles (--show N, --html FILE)",
                           style="dim"))
    if result.rows:
        console.print(summary_table(result))
    for w in result.summary.get("warnings", []):
        console.print(Text(f"warning: {w}", style="yellow"))
    table = findings_table(result.report)
    if table is not None:
        console.print(table)
    console.print(passed_line(result.report))
    console.print(verdict_text(result.report))


def findings_table(report: Report) -> Table | None:
    """Findings (info/warn/fail) as a table; None when every check passed."""
    rows = [c for c in report.checks if c.is_finding]
    return checks_table(rows, "findings") if rows else None


def passed_line(report: Report) -> Text:
    ok = [c.code for c in report.checks if c.status == "pass"]
    skipped = [c.code for c in report.checks if c.status == "skip"]
    text = Text(f"passed: {' '.join(dict.fromkeys(ok)) or 'none'}", style="green")
    if skipped:
        text.append(f"   skipped: {' '.join(dict.fromkeys(skipped))}", style="dim")
    return text


def print_merge(report: Report, console: Console) -> None:
    """Where the merged model went, the verification, findings and verdict."""
    d = report.details
    if d.get("out"):
        console.print(Text("merged model: ", style="bold").append(str(d["out"])))
    for c in report.checks:
        if c.code == "B002":
            console.print(Text(f"verify: {c.message}", style="green" if c.status == "pass"
                               else "bold red"))
    table = findings_table(report)
    if table is not None:
        console.print(table)
    console.print(passed_line(report))
    console.print(verdict_text(report))
