"""Markdown report of an ab-test: summary table, findings, and base/adapter text per title."""

from __future__ import annotations

from typing import Any

from ftdiag.abtest import ABResult


def cell(text: Any) -> str:
    """Text made safe for one Markdown table cell."""
    s = "–" if text is None else f"{text:.3f}" if isinstance(text, float) else str(text)
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip() or "–"


def block(text: str) -> str:
    """Text in a fenced block that its own backticks cannot close."""
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}text\n{text}\n{fence}"


def summary_rows(result: ABResult) -> list[str]:
    s = result.summary
    arms = list(s["mean_new_tokens"])
    lines = ["| metric | " + " | ".join(arms) + " |", "|---|" + "---:|" * len(arms)]
    lines.append("| mean new tokens | " + " | ".join(f"{s['mean_new_tokens'][a]:.1f}"
                                                    for a in arms) + " |")
    lines.append("| hit max_new_tokens | " + " | ".join(f"{s['hit_max_share'][a]:.0%}"
                                                       for a in arms) + " |")
    for key, label in (("rouge_l", "ROUGE-L vs reference ↑"), ("token_f1", "token-F1 ↑"),
                       ("ref_nll", "reference NLL / token ↓")):
        if key in s:
            lines.append(f"| {label} | " + " | ".join(cell(s[key].get(a)) for a in arms) + " |")
    return lines


def to_markdown(result: ABResult) -> str:
    """The whole ab-test as Markdown (summary, findings, per-title outputs)."""
    rep, s = result.report, result.summary
    out = [f"# ftdiag ab-test: {rep.verdict.upper()}", ""]
    if result.rows:
        out += [f"Identical base/adapter outputs: **{s['identical']}/{s['n']}** "
                f"({s['identical_share']:.0%}).", "",
                f"Generation: `{cell(s.get('generation_config'))}`", "", "## Summary", "",
                *summary_rows(result), ""]
    out += ["## Checks", "", "| status | code | check | evidence | hint |", "|---|---|---|---|---|"]
    out += [f"| {c.status} | {c.code} | {cell(c.title)} | {cell(c.message)} | {cell(c.hint)} |"
            for c in rep.checks]
    for i, row in enumerate(result.rows, 1):
        state = "identical" if row.identical else f"differ from token {row.first_divergent_token}"
        out += ["", f"## {i}. {cell(row.title)}", "", f"*{state}*", ""]
        for arm, text in row.outputs.items():
            out += [f"**{arm}** ({row.tokens[arm]} tokens)", "", block(text), ""]
        if row.reference:
            out += ["**reference**", "", block(row.reference), ""]
    return "\n".join(out).rstrip() + "\n"
