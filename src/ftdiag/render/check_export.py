"""check-export reports: Rich (modules table, checks, verdict), Markdown, HTML and JUnit."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ftdiag.export.check import ExportDetails
from ftdiag.export.delta import ModuleCheck
from ftdiag.findings import Report
from ftdiag.render.findings import checks_table, verdict_text

SHOWN = 8  # modules listed in the table; the rest are summarised
STYLE = {"merged": "green", "base": "red", "wrong": "red", "missing": "red", "shape": "red",
         "unresolved": "yellow", "no-update": "dim", "dora": "dim"}


def details_of(report: Report) -> ExportDetails:
    d = report.details
    assert isinstance(d, ExportDetails)
    return d


def fmt(x: float | None, spec: str = ".3f") -> str:
    return "–" if x is None else format(x, spec)


def shown_modules(checks: list[ModuleCheck]) -> list[ModuleCheck]:
    """Problem modules first, then the rest, at most SHOWN."""
    rank = {"wrong": 0, "missing": 0, "shape": 0, "base": 1, "unresolved": 2}
    return sorted(checks, key=lambda c: (rank.get(c.verdict, 3), -(c.lost_share or 0)))[:SHOWN]


def module_rows(checks: list[ModuleCheck]) -> list[list[str]]:
    return [[c.module, c.verdict, c.dtype, fmt(c.scale), fmt(c.rel_err), fmt(c.cosine),
             fmt(c.lost_share, ".1%")] for c in shown_modules(checks)]


HEAD = ["module", "verdict", "dtype", "scale", "rel. err", "cosine", "update lost"]


def modules_table(d: ExportDetails) -> Table:
    table = Table(title=f"{d.kind}: {d.export}", title_justify="left")
    for i, col in enumerate(HEAD):
        table.add_column(col, justify="right" if i >= 3 else "left", no_wrap=i == 0)
    for row, c in zip(module_rows(d.modules), shown_modules(d.modules), strict=True):
        table.add_row(row[0], Text(row[1], style=STYLE.get(c.verdict, "")), *row[2:])
    return table


def summary_line(d: ExportDetails) -> str:
    t = d.totals
    if t is None:
        return ""
    counts = ", ".join(f"{n} {v}" for v, n in sorted(t.by_verdict.items()))
    more = f" (table shows {SHOWN})" if t.modules > SHOWN else ""
    return (f"{t.modules} adapted modules{more}: {counts}; update lost to the saved precision: "
            f"{fmt(t.lost_share, '.1%')}")


def print_export(report: Report, console: Console) -> None:
    """Modules table (merged exports), LoRA GGUF/Modelfile facts, checks, verdict."""
    d = details_of(report)
    if d.modules:
        console.print(modules_table(d))
        console.print(Text(summary_line(d), style="dim"))
    for line in extra_lines(d):
        console.print(Text(line, style="dim"))
    console.print(checks_table(report.checks))
    console.print(verdict_text(report))


def extra_lines(d: ExportDetails) -> list[str]:
    """One line each for the LoRA GGUF and the Modelfile, when checked."""
    out = []
    g: Any = d.gguf_lora
    if g is not None:
        out.append(f"LoRA GGUF {d.export}: type {g.general_type}/{g.adapter_type}, "
                   f"arch {g.architecture}, alpha {g.alpha}, {g.pairs} pairs")
    m: Any = d.modelfile
    if m is not None:
        out.append(f"Modelfile {m.path}: FROM {m.from_ref}, ADAPTER {m.adapter_ref or '–'}, "
                   f"TEMPLATE {'yes' if m.template else 'no'}, stop {m.stops or '–'}")
    return out


def to_markdown(report: Report) -> str:
    from ftdiag.render.text import cell, checks_markdown

    d = details_of(report)
    out = [f"# ftdiag check-export: {report.verdict.upper()}", "",
           f"Export `{d.export}` ({d.kind}), adapter `{d.adapter}`, base `{d.base or '–'}`.", ""]
    if d.modules:
        out += ["## Modules", "", "| " + " | ".join(HEAD) + " |",
                "|---|---|---|" + "---:|" * (len(HEAD) - 3)]
        out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in module_rows(d.modules)]
        out += ["", summary_line(d), ""]
    out += [f"{line}" for line in extra_lines(d)]
    out += ["", "## Checks", "", *checks_markdown(report.checks)]
    return "\n".join(out).rstrip() + "\n"


def to_html(report: Report) -> str:
    from ftdiag.render.text import CSS, checks_html, h

    d = details_of(report)
    v = report.verdict
    parts = [f"<h1>ftdiag check-export: <span class={v}>{v.upper()}</span></h1>",
             f"<p>Export <code>{h(d.export)}</code> ({h(d.kind)}), adapter "
             f"<code>{h(d.adapter)}</code>, base <code>{h(d.base)}</code>.</p>"]
    if d.modules:
        head = "".join(f"<th>{h(c)}</th>" for c in HEAD)
        body = "".join("<tr>" + "".join(f"<td>{h(x)}</td>" for x in row) + "</tr>"
                       for row in module_rows(d.modules))
        parts += [f"<h2>Modules</h2><table><tr>{head}</tr>{body}</table>",
                  f"<p class=dim>{h(summary_line(d))}</p>"]
    parts += [f"<p class=dim>{h(line)}</p>" for line in extra_lines(d)]
    parts += ["<h2>Checks</h2>", checks_html(report)]
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<title>ftdiag check-export: {v}</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def to_junit(report: Report) -> str:
    """One test case per check (failures for fail findings, skipped for skipped checks)."""
    from ftdiag.render.text import checks_suite

    suite = checks_suite(report, "ftdiag.check-export")
    suite.set("errors", "0")
    root = ET.Element("testsuites", name="ftdiag check-export")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
