"""Inline SVG plots for the HTML reports (matplotlib, the `plot` extra): loss curve, divergence.

Each function returns one `<svg>` element as text, or None when there is nothing to plot; it
raises ImportError without matplotlib (the report then says how to get the plot). Every data
series carries an id (`ftdiag-train`, `ftdiag-eval`, ...) and every data point a vertex, so a
reader (or a browser test) can find the points in the page.
"""

from __future__ import annotations

import io
import re
from typing import Any

from ftdiag.abtest.local import ABRow
from ftdiag.findings import Finding
from ftdiag.loss.analysis import RISE
from ftdiag.loss.details import LossAnalysis

PLOT_HINT = "pip install 'ftdiag[plot]'"  # matplotlib, for the plots in HTML reports
RC = {"svg.fonttype": "none",  # text stays text: small files, selectable labels
      "svg.hashsalt": "ftdiag",  # the same run gives the same file
      "path.simplify": False,  # one vertex per data point
      "font.size": 9}
TRAIN, SMOOTH, EVAL, LR, FLAG = "#0969da", "#0550ae", "#bf8700", "#8250df", "#cf222e"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> str:
    """The figure as one `<svg>` element (no XML prolog: it sits inside an HTML page)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    _pyplot().close(fig)
    text = re.sub(r"(?s)\A.*?(?=<svg)", "", buf.getvalue())
    return re.sub(r"(?s)\s*<metadata>.*?</metadata>", "", text)


def finding_codes(checks: list[Finding]) -> set[str]:
    return {c.code for c in checks if c.is_finding}


def loss_svg(d: LossAnalysis, checks: list[Finding]) -> str | None:
    """Train (raw and smoothed) and eval loss against step, learning rate on a second axis.

    L-findings are drawn where they apply: L003's spikes, L002's flat last third (or L003's
    rising one), the step where eval loss turns up (L005), the first NaN/Inf (L004).
    """
    train = d.curves.get("train") or []
    if not train:
        return None
    plt = _pyplot()
    found = finding_codes(checks)
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(8.5, 3.8), dpi=100)
        steps = [r[0] for r in train]
        ax.plot(steps, [r[1] for r in train], color=TRAIN, alpha=0.3, lw=0.8,
                label="train loss", gid="ftdiag-train")
        ax.plot(steps, [r[2] for r in train], color=SMOOTH, lw=1.8,
                label="train (running median)", gid="ftdiag-train-smoothed")
        ev = d.curves.get("eval") or []
        if ev:
            ax.plot([r[0] for r in ev], [r[1] for r in ev], "o--", color=EVAL, ms=4, lw=1.2,
                    label="eval loss", gid="ftdiag-eval")
        _mark_findings(ax, d, checks, found)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.25)
        handles, labels = ax.get_legend_handles_labels()
        lr = d.curves.get("lr") or []
        if lr:
            ax2 = ax.twinx()
            line, = ax2.plot([r[0] for r in lr], [r[1] for r in lr], color=LR, lw=1, ls=":",
                             label="learning rate", gid="ftdiag-lr")
            ax2.set_ylabel("learning rate", color=LR)
            ax2.tick_params(axis="y", colors=LR)
            ax2.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
            ax2.set_ylim(bottom=0)
            handles, labels = [*handles, line], [*labels, "learning rate"]
        ax.legend(handles, labels, loc="upper right", fontsize=8, framealpha=0.85)
        return _svg(fig)


def _mark_findings(ax: Any, d: LossAnalysis, checks: list[Finding], found: set[str]) -> None:
    if "L003" in found and d.spikes:
        ax.plot([s[0] for s in d.spikes], [s[1] for s in d.spikes], "x", color=FLAG, ms=8,
                mew=2, label="L003 spike", gid="ftdiag-L003-spikes")
    lt, codes = d.last_third, "/".join(sorted({"L002", "L003"} & found))
    if lt and codes and (codes != "L003" or lt["change"] > 0):  # flat, or the rise L003 saw
        rise = lt["change"]
        what = "rising" if rise > RISE else "flat" if rise > -RISE else "falling"
        ax.axvspan(*lt["steps"], color=FLAG, alpha=0.08, lw=0, gid="ftdiag-last-third",
                   label=f"{codes} last third {what} ({lt['change']:+.0%})")
    l005 = next((c for c in checks if c.code == "L005" and c.is_finding), None)
    if l005 is not None and "best_step" in l005.evidence:
        step = l005.evidence["best_step"]
        ax.axvline(step, color=FLAG, ls="--", lw=1.2, gid="ftdiag-L005-turn",
                   label=f"L005 eval turns up after step {step}")
    bad = (d.nonfinite or {}).get("first_step")
    if "L004" in found and bad is not None:
        ax.axvline(bad, color=FLAG, lw=2, gid="ftdiag-L004-nonfinite",
                   label=f"L004 first NaN/Inf at step {bad}")


def divergence_svg(rows: list[ABRow]) -> str | None:
    """One bar per title: the adapter's tokens, and the token where it first parts from base."""
    if not rows:
        return None
    plt = _pyplot()
    with plt.rc_context(RC):
        fig, ax = plt.subplots(figsize=(8.5, 0.9 + 0.32 * len(rows)), dpi=100)
        ys = list(range(len(rows)))
        for y, row in zip(ys, rows, strict=True):
            i = y + 1
            total = max(row.tokens.get("adapter", 0), row.tokens.get("base", 0), 1)
            ax.barh(y, total, color="#d0d7de", height=0.7, gid=f"ftdiag-tokens-{i}")
            if row.identical:
                ax.barh(y, total, color=FLAG, alpha=0.35, height=0.7, gid=f"ftdiag-same-{i}")
                ax.text(total, y, " identical", va="center", color=FLAG, fontsize=8)
            else:
                at = row.first_divergent_token or 0
                ax.barh(y, at, color=TRAIN, height=0.7, gid=f"ftdiag-div-{i}")
                ax.text(at, y, f" {at}", va="center", fontsize=8)
        ax.set_yticks(ys, [_clip(f"{y + 1}. {r.title}", 38) for y, r in zip(ys, rows,
                                                                            strict=True)])
        ax.invert_yaxis()
        ax.set_xlabel("generated tokens (blue: same as base up to the first divergent token)")
        ax.grid(axis="x", alpha=0.25)
        return _svg(fig)


def _clip(text: str, n: int) -> str:
    """One line of at most n characters, `$` escaped (matplotlib reads $...$ as maths)."""
    text = " ".join(text.split())
    text = text if len(text) <= n else text[: n - 1] + "…"
    return text.replace("$", r"\$")
