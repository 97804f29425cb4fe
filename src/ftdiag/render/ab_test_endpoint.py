"""`ab-test --endpoint` as Rich, Markdown, HTML and JUnit: served base/adapter (/ local pair)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ftdiag.abtest.served import (
    SERVED_ADAPTER,
    SERVED_BASE,
    EndpointResult,
    EndpointRow,
    EndpointSummary,
)
from ftdiag.demo.serve import ServeDemo
from ftdiag.render.findings import (
    checks_table,
    findings_table,
    passed_skipped_line,
    verdict_text,
)
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

ARM_STYLE = {SERVED_BASE: "cyan", SERVED_ADAPTER: "magenta", "base": "dim cyan",
             "adapter": "dim magenta"}
HEADERS = {SERVED_BASE: "served base", SERVED_ADAPTER: "served adapter", "base": "local base",
           "adapter": "local adapter"}
CLIP = 70


def verdict_of_row(row: EndpointRow) -> tuple[str, str]:
    """(label, style) saying what the served adapter reproduced on this title."""
    if row.outputs.get(SERVED_ADAPTER) is None:
        return "request failed", "bold red"
    if row.matches == "adapter":
        return "= local adapter", "green"
    if row.matches == "base":
        return "= local BASE", "bold red"
    if row.served_identical:
        return "= served BASE", "bold red"
    if row.served_drift_token is not None:
        return f"drifts at token {row.served_drift_token}", "yellow"
    return "differs from served base", "green"


def _clip(text: str | None) -> Text:
    if text is None:
        return Text("(failed)", style="red")
    flat = " ".join(text.split())
    return Text(flat[:CLIP] + ("…" if len(flat) > CLIP else "")) if flat else Text("(empty)",
                                                                                  style="dim")


def outputs_table(result: EndpointResult, show: int | None) -> Table:
    """One row per title: each arm's text (clipped) and what the served adapter matches."""
    rows = result.rows if show is None else result.rows[:show]
    arms = list(result.rows[0].outputs) if result.rows else []
    table = Table(title="served vs local (greedy)", title_justify="left", show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("title", overflow="fold", max_width=24)
    for arm in arms:
        table.add_column(HEADERS.get(arm, arm), style=ARM_STYLE.get(arm, ""), overflow="fold")
    table.add_column("served adapter is", no_wrap=True)
    for i, row in enumerate(rows, 1):
        label, style = verdict_of_row(row)
        table.add_row(str(i), row.title, *(_clip(row.outputs[a]) for a in arms),
                      Text(label, style=style))
    if result.summary is not None:
        table.caption = summary_line(result.summary)
    return table


def summary_line(s: EndpointSummary) -> str:
    return (f"{s.route} at {s.url}; served base = '{s.served_base}', served adapter = "
            f"'{s.served_adapter}'; identical served pair: {s.served_identical}/{s.n}")


def runtime_line(s: EndpointSummary) -> str:
    """`llama.cpp b1234 (GET /props build_info)`."""
    version = f" {s.runtime_version}" if s.runtime_version else ""
    return f"{s.runtime or 'server'}{version} ({s.runtime_evidence})"


def sent(s: EndpointSummary, arm: str) -> str:
    """What one served arm sent besides the prompt, as JSON fields."""
    import json

    fields = {k: v for k, v in s.requests.get(arm, {}).items() if k != "chosen_by"}
    return json.dumps(fields, ensure_ascii=False)


def requests_table(s: EndpointSummary) -> Table:
    """The runtime detected and what each served arm sent."""
    table = Table(title=f"server: {runtime_line(s)}", title_justify="left", show_header=True)
    table.add_column("arm")
    table.add_column("request fields")
    table.add_column("from")
    for arm in (SERVED_BASE, SERVED_ADAPTER):
        table.add_row(Text(HEADERS[arm], style=ARM_STYLE[arm]), sent(s, arm),
                      s.requests.get(arm, {}).get("chosen_by", ""))
    return table


def print_endpoint(result: EndpointResult, console: Console, show: int | None = None) -> None:
    """Everything a person reads after `ftdiag ab-test --endpoint`."""
    if result.summary is not None and result.summary.requests:
        console.print(requests_table(result.summary))
        for note in result.summary.notes:
            console.print(Text(f"note: {note}", style="dim"))
    if result.rows and show != 0:
        console.print(outputs_table(result, show))
    elif result.summary is not None:
        console.print(Text(summary_line(result.summary), style="dim"))
    if result.rows and show is not None and len(result.rows) > show:
        console.print(Text(f"… {len(result.rows) - show} more titles (--show N, --html FILE)",
                           style="dim"))
    table = findings_table(result.report)
    if table is not None:
        console.print(table)
    console.print(passed_skipped_line(result.report))
    console.print(verdict_text(result.report))


def to_markdown(result: EndpointResult) -> str:
    """Checks, then every title's served (and local) texts."""
    rep, s = result.report, result.summary
    out = [f"# ftdiag ab-test --endpoint: {rep.verdict.upper()}", ""]
    if s is not None:
        out += [f"Server `{s.url}` ({s.route}): served base `{cell(s.served_base)}`, served "
                f"adapter `{cell(s.served_adapter)}`; identical: **{s.served_identical}/{s.n}**.",
                "", f"Runtime: {cell(runtime_line(s))}; the base arm sent "
                f"`{cell(sent(s, SERVED_BASE))}`, the adapter arm "
                f"`{cell(sent(s, SERVED_ADAPTER))}`.",
                ""]
    out += ["## Checks", "", *checks_markdown(rep.checks)]
    for i, row in enumerate(result.rows, 1):
        out += ["", f"## {i}. {cell(row.title)}", "", f"*served adapter is: "
                f"{verdict_of_row(row)[0]}*", ""]
        for arm, text in row.outputs.items():
            out += [f"**{HEADERS.get(arm, arm)}**", "", block("(failed)" if text is None
                                                              else text), ""]
    return "\n".join(out).rstrip() + "\n"


def to_html(result: EndpointResult) -> str:
    """One self-contained page: checks, then a table of every title's texts."""
    v = result.report.verdict
    checks = checks_html(result.report)
    s = result.summary
    server = (f"<p>Runtime: {h(runtime_line(s))}; the base arm sent <code>{h(sent(s, SERVED_BASE))}"
              f"</code>, the adapter arm <code>{h(sent(s, SERVED_ADAPTER))}</code>.</p>"
              if s is not None and s.requests else "")
    arms = list(result.rows[0].outputs) if result.rows else []
    head = "".join(f"<th>{h(HEADERS.get(a, a))}</th>" for a in arms)
    body = "".join(
        f"<tr><td>{i}</td><td>{h(r.title)}</td>"
        + "".join(f"<td><pre>{h(r.outputs[a])}</pre></td>" for a in arms)
        + f"<td>{h(verdict_of_row(r)[0])}</td></tr>" for i, r in enumerate(result.rows, 1))
    table = (f"<table><tr><th>#</th><th>title</th>{head}<th>served adapter is</th></tr>{body}"
             "</table>") if result.rows else ""
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<title>ftdiag ab-test --endpoint: {v}</title><style>{CSS}</style></head><body>"
            f"<h1>ftdiag ab-test --endpoint: <span class={v}>{v.upper()}</span></h1>"
            f"{server}<h2>Checks</h2>{checks}<h2>Titles</h2>{table}</body></html>\n")


def to_junit(result: EndpointResult) -> str:
    """A titles suite (failing where the served adapter is a base) and the checks suite."""
    suite = ET.Element("testsuite", name="ftdiag.ab-test.endpoint")
    failures = 0
    for i, row in enumerate(result.rows, 1):
        case = ET.SubElement(suite, "testcase", classname="ftdiag.ab-test.endpoint",
                             name=xml_safe(f"{i:03d} {row.title[:120]}"))
        label, _ = verdict_of_row(row)
        if row.matches in ("base", SERVED_BASE) or row.outputs.get(SERVED_ADAPTER) is None:
            failures += 1
            ET.SubElement(case, "failure", message=xml_safe(f"served adapter: {label}"))
        ET.SubElement(case, "system-out").text = xml_safe(
            "\n".join(f"[{arm}] {text}" for arm, text in row.outputs.items()))
    suite.set("tests", str(len(result.rows)))
    suite.set("failures", str(failures))
    root = ET.Element("testsuites", name="ftdiag ab-test --endpoint")
    for s in (suite, checks_suite(result.report, "ftdiag.ab-test.checks")):
        s.set("errors", "0")
        root.append(s)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def print_serve_demo(demo: ServeDemo, console: Console) -> None:
    """`demo --serve`: the export passing, the wrong name failing, and the demo's verdict."""
    console.rule("[bold]5. serving: ab-test --endpoint on transformers serve")
    console.print(f"server: {demo.url}   merged export: {demo.merged}")
    console.print(Text("the merged export under its own name:", style="bold"))
    print_endpoint(demo.healthy, console, show=3)
    console.print(Text("the fine-tune's name deployed with the base weights:", style="bold"))
    print_endpoint(demo.wrong, console, show=0)
    console.print(checks_table(demo.report.checks, "demo --serve"))
