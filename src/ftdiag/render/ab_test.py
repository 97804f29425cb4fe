"""ab-test output in every format: Rich (terminal), Markdown, HTML and JUnit XML files."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ftdiag.abtest.local import ABResult, ABRow, AbSummary
from ftdiag.generation.metrics import word_diff
from ftdiag.render.findings import findings_table, passed_skipped_line, verdict_text
from ftdiag.render.text import (
    CSS,
    block,
    cell,
    checks_html,
    checks_markdown,
    checks_suite,
    h,
    xml_safe,
)

ARM_STYLE = {"base": "cyan", "adapter": "magenta", "merged": "blue"}
FILE_LABELS = ("ROUGE-L vs reference ↑", "token-F1 ↑", "reference NLL / token ↓")


def reference_rows(s: AbSummary,
                   labels: tuple[str, str, str]) -> list[tuple[str, dict[str, float]]]:
    """(label, per-arm value) of each reference metric the run measured."""
    values = (s.rouge_l, s.token_f1, s.ref_nll)
    return [(label, v) for label, v in zip(labels, values, strict=True) if v is not None]


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
    arms = list(s.mean_new_tokens)
    table = Table(title="summary", title_justify="left")
    table.add_column("metric", style="bold")
    for arm in arms:
        table.add_column(arm, justify="right", style=ARM_STYLE.get(arm, ""))
    table.add_row("mean new tokens", *(fmt(s.mean_new_tokens[a], 1) for a in arms))
    table.add_row("hit max_new_tokens", *(f"{s.hit_max_share[a]:.0%}" for a in arms))
    for label, values in reference_rows(s, ("ROUGE-L vs ref ↑", "token-F1 vs ref ↑",
                                            "ref NLL / token ↓")):
        table.add_row(label, *(fmt(values.get(a)) for a in arms))
    div = s.first_divergent_token
    table.caption = (f"identical base/adapter: {s.identical}/{s.n} "
                     f"({s.identical_share:.0%}); first divergent token: mean "
                     f"{fmt(div.mean, 1)}, min {fmt(div.min)}")
    return table


def gen_line(result: ABResult) -> Text:
    s = result.summary
    parts = ", ".join(f"{k}={v}" for k, v in s.generation_config.items())
    text = Text("generation: ", style="bold").append(parts)
    if s.generation_overridden:
        text.append(f"  (overrode model defaults {s.generation_overridden})", style="dim")
    plan = s.plan
    how = ("one mixed batch, base rows = __base__" if plan.mixed_batch
           else "separate passes, base = disable_adapter()")
    text.append(f"\narms: {how}; {plan.generate_calls} generate calls, {plan.rows} rows",
                style="dim")
    text.append(f"\ndtype: {s.dtype.dtype}, both arms: {s.dtype.reason}", style="dim")
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
    for w in result.summary.warnings:
        console.print(Text(f"warning: {w}", style="yellow"))
    table = findings_table(result.report)
    if table is not None:
        console.print(table)
    console.print(passed_skipped_line(result.report))
    console.print(verdict_text(result.report))


# Markdown

def summary_rows(result: ABResult) -> list[str]:
    s = result.summary
    arms = list(s.mean_new_tokens)
    lines = ["| metric | " + " | ".join(arms) + " |", "|---|" + "---:|" * len(arms)]
    lines.append("| mean new tokens | " + " | ".join(f"{s.mean_new_tokens[a]:.1f}"
                                                    for a in arms) + " |")
    lines.append("| hit max_new_tokens | " + " | ".join(f"{s.hit_max_share[a]:.0%}"
                                                       for a in arms) + " |")
    for label, values in reference_rows(s, FILE_LABELS):
        lines.append(f"| {label} | " + " | ".join(cell(values.get(a)) for a in arms) + " |")
    return lines


def to_markdown(result: ABResult) -> str:
    """The whole ab-test as Markdown (summary, findings, per-title outputs)."""
    rep, s = result.report, result.summary
    out = [f"# ftdiag ab-test: {rep.verdict.upper()}", ""]
    if result.rows:
        out += [f"Identical base/adapter outputs: **{s.identical}/{s.n}** "
                f"({s.identical_share:.0%}).", "",
                f"Generation: `{cell(s.generation_config)}`", "", "## Summary", "",
                *summary_rows(result), ""]
    out += ["## Checks", "", *checks_markdown(rep.checks)]
    for i, row in enumerate(result.rows, 1):
        state = "identical" if row.identical else f"differ from token {row.first_divergent_token}"
        out += ["", f"## {i}. {cell(row.title)}", "", f"*{state}*", ""]
        for arm, text in row.outputs.items():
            out += [f"**{arm}** ({row.tokens[arm]} tokens)", "", block(text), ""]
        if row.reference:
            out += ["**reference**", "", block(row.reference), ""]
    return "\n".join(out).rstrip() + "\n"


# HTML

def diff_html(a: str, b: str) -> tuple[str, str]:
    """`a` with removed words in <del>, `b` with added words in <ins>."""
    left, right = [], []
    for op in word_diff(a, b):
        if op.op == "equal":
            left.append(h(op.text))
            right.append(h(op.text))
        elif op.op == "delete":
            left.append(f"<del>{h(op.text)}</del>")
        else:
            right.append(f"<ins>{h(op.text)}</ins>")
    return "".join(left), "".join(right)


def summary_html(result: ABResult) -> str:
    s = result.summary
    arms = list(s.mean_new_tokens)
    rows = [("mean new tokens", [h(s.mean_new_tokens[a]) for a in arms]),
            ("hit max_new_tokens", [f"{s.hit_max_share[a]:.0%}" for a in arms])]
    for label, values in reference_rows(s, FILE_LABELS):
        rows.append((label, [h(values.get(a)) for a in arms]))
    head = "".join(f"<th>{h(a)}</th>" for a in arms)
    body = "".join(f"<tr><td>{h(label)}</td>" + "".join(f'<td class="num">{v}</td>'
                                                         for v in vals) + "</tr>"
                   for label, vals in rows)
    div = s.first_divergent_token
    return (f"<p>Identical base/adapter outputs: <b>{s.identical}/{s.n}</b> "
            f"({s.identical_share:.0%}); first divergent token: mean {h(div.mean)}, "
            f"min {h(div.min)}.</p><table><tr><th>metric</th>{head}</tr>{body}</table>"
            f"<p class=dim>generation: {h(s.generation_config)}</p>")


def row_html(i: int, row: ABRow) -> str:
    base, adapter = diff_html(row.outputs["base"], row.outputs["adapter"])
    cols = [("base", base), ("adapter", adapter)]
    cols += [(arm, h(t)) for arm, t in row.outputs.items() if arm not in ("base", "adapter")]
    arms = "".join(f"<div><b>{h(arm)}</b> <span class=dim>({row.tokens[arm]} tokens"
                   f"{', hit max' if row.hit_max[arm] else ''})</span><pre>{text}</pre></div>"
                   for arm, text in cols)
    state = ("<span class=st-fail>identical</span>" if row.identical else
             f"<span class=st-pass>differ from token {row.first_divergent_token}</span>")
    ref = (f"<p class=dim>reference:</p><div class=ref>{h(row.reference)}</div>"
           if row.reference else "")
    cls = "title same" if row.identical else "title"
    return (f'<section class="{cls}"><h3>{i}. {h(row.title)}</h3><p>{state}'
            f"{' (title truncated)' if row.truncated else ''}</p><div class=arms>{arms}</div>"
            f"{ref}</section>")


def to_html(result: ABResult) -> str:
    """The whole ab-test as one HTML page a person can open or share."""
    v = result.report.verdict
    parts = [f"<h1>ftdiag ab-test: <span class={v}>{v.upper()}</span></h1>"]
    if result.rows:
        parts += ["<h2>Summary</h2>", summary_html(result)]
    parts += ["<h2>Checks</h2>", checks_html(result.report)]
    if result.rows:
        parts += ["<h2>Titles</h2>", *(row_html(i, r) for i, r in enumerate(result.rows, 1))]
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>ftdiag ab-test: {v}</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


# JUnit XML

def _titles_suite(result: ABResult) -> ET.Element:
    suite = ET.Element("testsuite", name="ftdiag.ab-test.titles")
    failures = 0
    for i, row in enumerate(result.rows, 1):
        case = ET.SubElement(suite, "testcase", classname="ftdiag.ab-test.titles",
                             name=xml_safe(f"{i:03d} {row.title[:120]}"))
        if row.identical:
            failures += 1
            fail = ET.SubElement(case, "failure", type="B001",
                                 message="base and adapter outputs are identical")
            fail.text = xml_safe(row.outputs["adapter"])
        out = ET.SubElement(case, "system-out")
        out.text = xml_safe("\n".join(f"[{arm}] {text}" for arm, text in row.outputs.items()))
    suite.set("tests", str(len(result.rows)))
    suite.set("failures", str(failures))
    return suite


def to_junit(result: ABResult) -> str:
    """<testsuites>: a titles suite (one case per title) and a checks suite (one per check)."""
    root = ET.Element("testsuites", name="ftdiag ab-test")
    for suite in (_titles_suite(result), checks_suite(result.report, "ftdiag.ab-test.checks")):
        suite.set("errors", "0")
        root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
