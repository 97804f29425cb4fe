"""doctor's HTML report: one self-contained page (inline CSS and SVG, no script) to share.

Sections: verdict, success criteria, ranked causes, the loss curve, every check under its label
(what a pass proves, what a finding found), and the A/B review: each title's base, adapter and
reference, where the texts part, the word diff base → adapter, ROUGE-L and NLL per arm.
"""

from __future__ import annotations

from collections.abc import Callable

from ftdiag.abtest.local import ABResult, ABRow
from ftdiag.doctor.run import DoctorResult
from ftdiag.findings import Finding
from ftdiag.loss.details import LossAnalysis
from ftdiag.render.text import CSS, h, word_diff_html

MARK = {"pass": "✓", "fail": "✗", "skip": "–", "warn": "⚠", "info": "ℹ"}
FOLD_CHARS = 320  # an output longer than this folds into <details> (its start stays visible)
PAGE_CSS = CSS + """
.verdict{font-size:1.3rem;font-weight:bold}.verdict.pass{color:#1a7f37}
.verdict.warn{color:#9a6700}.verdict.fail{color:#cf222e}
.pass,.st-pass{color:#1a7f37}.warn{color:#9a6700}.fail{color:#cf222e}.skip{color:#57606a}
td.mark{font-weight:bold;text-align:center}figure{margin:1rem 0}figure svg{max-width:100%;
height:auto}figcaption{color:#57606a;font-size:.85rem}
.arms{grid-template-columns:repeat(auto-fit,minmax(18rem,1fr))}.arms>div>b{display:block}
mark.first-diff{background:#fff8c5;outline:1px solid #d4a72c;border-radius:2px}
mark.first-diff.end::after{content:"⟨end⟩";color:#9a6700}
details>summary{cursor:pointer;color:#57606a}details>summary pre{display:inline}
table.metrics td,table.metrics th{font-size:.85rem}.nodata{color:#9a6700}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f8fa;padding:.5rem;margin:0;
font-size:.9rem}
"""


def to_html(result: DoctorResult) -> str:
    """The whole diagnosis as one self-contained HTML page (all text escaped)."""
    rep = result.report
    v = rep.verdict
    parts = [f"<h1>ftdiag doctor: <code>{h(result.run_dir)}</code></h1>",
             f"<p class='verdict {v}'>Verdict: {v.upper()}</p>",
             criteria_html(result), causes_html(result)]
    loss = result.sections.loss
    if loss is not None and isinstance(loss.details, LossAnalysis):
        parts.append(loss_html(loss.details, loss.checks))
    parts.append(checks_html(rep.checks))
    if result.sections.ab is not None and result.sections.ab.rows:
        parts.append(ab_html(result.sections.ab))
    return ("<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>ftdiag doctor: {v}</title><style>{PAGE_CSS}</style></head><body>\n"
            + "\n".join(p for p in parts if p) + "\n</body></html>\n")


def criteria_html(result: DoctorResult) -> str:
    rows = []
    for i, c in enumerate(result.criteria, 1):
        st = "pass" if c.ok else ("skip" if c.ok is None else "fail")
        rows.append(f"<tr><td class='mark {st}'>{MARK[st]}</td><td>{i}. {h(c.name)}</td>"
                    f"<td>{h(c.evidence)}</td></tr>")
    return ("<h2>Success criteria</h2><table><tr><th></th><th>criterion</th><th>evidence</th>"
            f"</tr>{''.join(rows)}</table>")


def causes_html(result: DoctorResult) -> str:
    if not result.causes:
        return ""
    items = "".join(f"<li><b>{h(rc.cause.title)}</b> <span class='{rc.severity}'>"
                    f"({h(rc.severity)})</span><br>{h('; '.join(rc.evidence[:3]))}<br>"
                    f"Try: <code>{h(rc.cause.next_step)}</code></li>" for rc in result.causes)
    return f"<h2>Most likely causes</h2><ol>{items}</ol>"


def checks_html(checks: list[Finding]) -> str:
    """Every check under its label: a tick beside what it proves, a cross beside what it found."""
    rows = "".join(
        f"<tr class=check data-code='{h(c.code)}' data-status='{c.status}'>"
        f"<td class='mark {c.status}'>{MARK.get(c.status, '?')}</td><td>{h(c.code)}</td>"
        f"<td class=label>{h(c.label)}</td><td>{h(c.evidence_text)}</td>"
        f"<td class=dim>{h(c.hint)}</td></tr>" for c in checks)
    return ("<h2>Checks</h2><table class=checks><tr><th></th><th>code</th><th>check</th>"
            f"<th>evidence</th><th>hint</th></tr>{rows}</table>")


def _figure(kind: str, make: Callable[[], str | None], caption: str) -> str:
    """A plot as inline SVG, or a line saying how to get it without matplotlib."""
    from ftdiag.render.plots import PLOT_HINT

    try:
        svg = make()
    except ImportError:
        return (f"<p class='nodata plot-missing' data-plot='{kind}'>The {h(caption)} plot needs "
                f"matplotlib: <code>{h(PLOT_HINT)}</code>, then run doctor again.</p>")
    if not svg:
        return ""
    return (f"<figure class=plot data-plot='{kind}'>{svg}<figcaption>{h(caption)}"
            "</figcaption></figure>")


def loss_html(d: LossAnalysis, checks: list[Finding]) -> str:
    from ftdiag.render.loss_report import summary_rows
    from ftdiag.render.plots import loss_svg

    rows = "".join(f"<tr><th>{h(k)}</th><td>{h(v)}</td></tr>" for k, v in summary_rows(d))
    fig = _figure("loss", lambda: loss_svg(d, checks),
                  "loss curve: train and eval loss against step, learning rate on the right "
                  "axis; L-findings marked where they apply")
    return f"<h2>Loss</h2>{fig}<table>{rows}</table>"


def ab_html(ab: ABResult) -> str:
    """The A/B review: summary, the first-divergent-token chart, then one section per title."""
    from ftdiag.render.ab_test import summary_html
    from ftdiag.render.plots import divergence_svg

    fig = _figure("divergence", lambda: divergence_svg(ab.rows),
                  "first divergent token per title: where the adapter's text parts from base")
    rows = "\n".join(title_html(i, r) for i, r in enumerate(ab.rows, 1))
    return f"<h2>Base vs adapter (greedy)</h2>{summary_html(ab)}{fig}\n{rows}"


def title_html(i: int, row: ABRow) -> str:
    """One title as a review: arms with the first divergent token marked, the diff, metrics."""
    base, adapter = row.outputs.get("base", ""), row.outputs.get("adapter", "")
    at = None if row.identical else _common_prefix(base, adapter)
    arms = "".join(_arm_html(arm, text, row, at) for arm, text in row.outputs.items())
    if row.reference:
        arms += (f"<div class=arm data-arm=reference><b>reference <span class=dim>(training "
                 f"data)</span></b>{_fold(h(row.reference), row.reference)}</div>")
    state = ("<span class=fail>identical: the adapter wrote what the base wrote</span>"
             if row.identical else
             f"<span class=pass>texts part at token {row.first_divergent_token}</span> "
             "<span class=dim>(marked)</span>")
    diff = ("" if row.identical else
            "<div class=diff><b>diff base → adapter</b> <span class=dim>(<ins>added</ins> "
            f"<del>dropped</del>)</span>{_fold(word_diff_html(base, adapter), adapter)}</div>")
    cls = "title same" if row.identical else "title"
    return (f"<section class='{cls}' data-index={i}><h3>{i}. {h(row.title)}</h3><p>{state}"
            f"{' (title truncated)' if row.truncated else ''}</p>{metrics_html(row)}"
            f"<div class=arms>{arms}</div>{diff}</section>")


def _arm_html(arm: str, text: str, row: ABRow, at: int | None) -> str:
    body = _marked(text, at, row) if arm in ("base", "adapter") else h(text)
    note = f"{row.tokens.get(arm, 0)} tokens{', hit max' if row.hit_max.get(arm) else ''}"
    return (f"<div class=arm data-arm='{h(arm)}'><b>{h(arm)} <span class=dim>({note})</span></b>"
            f"{_fold(body, text)}</div>")


def metrics_html(row: ABRow) -> str:
    """Tokens, ROUGE-L and reference NLL per arm (the last two when the title has a reference)."""
    arms = list(row.outputs)
    lines = [("tokens", {a: str(row.tokens.get(a, "–")) for a in arms})]
    if row.rouge_l:
        lines.append(("ROUGE-L vs reference ↑", {a: h(row.rouge_l.get(a)) for a in arms}))
    if row.ref_nll:
        lines.append(("reference NLL / token ↓", {a: h(row.ref_nll.get(a)) for a in arms}))
    head = "".join(f"<th>{h(a)}</th>" for a in arms)
    body = "".join(f"<tr><td>{h(name)}</td>" + "".join(f"<td class=num>{vals[a]}</td>"
                                                       for a in arms) + "</tr>"
                   for name, vals in lines)
    return f"<table class=metrics><tr><th></th>{head}</tr>{body}</table>"


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    return next((k for k in range(n) if a[k] != b[k]), n)


def _marked(text: str, at: int | None, row: ABRow) -> str:
    """`text` escaped, the word holding character `at` (where base and adapter part) marked."""
    if at is None:
        return h(text)
    tip = f"first divergent token (#{row.first_divergent_token})"
    if at >= len(text):
        return f"{h(text)}<mark class='first-diff end' title='{h(tip)}'></mark>"
    start = at
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    end = at
    while end < len(text) and not text[end].isspace():
        end += 1
    end = max(end, at + 1)
    return (f"{h(text[:start])}<mark class=first-diff title='{h(tip)}'>{h(text[start:end])}"
            f"</mark>{h(text[end:])}")


def _fold(body: str, plain: str) -> str:
    """A text block; a long one folds into <details> with its opening shown (opens on click)."""
    if len(plain) <= FOLD_CHARS:
        return f"<pre>{body}</pre>"
    preview = h(" ".join(plain[:140].split()))
    return (f"<details><summary>{preview}… <i>({len(plain)} characters, click to open)</i>"
            f"</summary><pre>{body}</pre></details>")
