"""A self-contained HTML ab-test report (inline CSS, word-diff highlighting, all text escaped)."""

from __future__ import annotations

from html import escape
from typing import Any

from ftdiag.abtest import ABResult, ABRow
from ftdiag.compare import word_diff
from ftdiag.render.junit import xml_safe

CSS = """
body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}
h1 .pass{color:#1a7f37}h1 .warn{color:#9a6700}h1 .fail{color:#cf222e}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ddd;padding:.3rem .6rem;
vertical-align:top;text-align:left}th{background:#f6f8fa}td.num{text-align:right}
.st-pass{color:#1a7f37}.st-warn{color:#9a6700}.st-fail{color:#cf222e;font-weight:bold}
.st-skip,.st-info{color:#57606a}
.title{border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
.title.same{border-color:#cf222e}.arms{display:grid;grid-template-columns:1fr 1fr;gap:1rem}
.arms pre,.ref{white-space:pre-wrap;background:#f6f8fa;padding:.5rem;margin:0;font-size:.9rem}
del{background:#ffebe9;color:#82071e}ins{background:#dafbe1;color:#116329;text-decoration:none}
.dim{color:#57606a}
"""


def h(value: Any) -> str:
    """Escaped text (numbers formatted)."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return escape(xml_safe(str(value)))


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
    arms = list(s["mean_new_tokens"])
    rows = [("mean new tokens", [h(s["mean_new_tokens"][a]) for a in arms]),
            ("hit max_new_tokens", [f"{s['hit_max_share'][a]:.0%}" for a in arms])]
    for key, label in (("rouge_l", "ROUGE-L vs reference ↑"), ("token_f1", "token-F1 ↑"),
                       ("ref_nll", "reference NLL / token ↓")):
        if key in s:
            rows.append((label, [h(s[key].get(a)) for a in arms]))
    head = "".join(f"<th>{h(a)}</th>" for a in arms)
    body = "".join(f"<tr><td>{h(label)}</td>" + "".join(f'<td class="num">{v}</td>'
                                                         for v in vals) + "</tr>"
                   for label, vals in rows)
    div = s["first_divergent_token"]
    return (f"<p>Identical base/adapter outputs: <b>{s['identical']}/{s['n']}</b> "
            f"({s['identical_share']:.0%}); first divergent token: mean {h(div['mean'])}, "
            f"min {h(div['min'])}.</p><table><tr><th>metric</th>{head}</tr>{body}</table>"
            f"<p class=dim>generation: {h(s.get('generation_config'))}</p>")


def checks_html(result: ABResult) -> str:
    rows = "".join(
        f'<tr><td class="st-{c.status}">{h(c.status)}</td><td>{h(c.code)}</td>'
        f"<td>{h(c.title)}</td><td>{h(c.message)}</td><td class=dim>{h(c.hint)}</td></tr>"
        for c in result.report.checks)
    return ("<table><tr><th>status</th><th>code</th><th>check</th><th>evidence</th>"
            f"<th>hint</th></tr>{rows}</table>")


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
    parts += ["<h2>Checks</h2>", checks_html(result)]
    if result.rows:
        parts += ["<h2>Titles</h2>", *(row_html(i, r) for i, r in enumerate(result.rows, 1))]
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>ftdiag ab-test: {v}</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")
