"""Rich rendering of check-adapter: checks table, per-layer stats, runtime status, verdict."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ftdiag.adapters.details import AdapterStats, CheckDetails, RuntimeDetails
from ftdiag.adapters.folder import FolderCheck
from ftdiag.adapters.stats import LayerStat
from ftdiag.findings import Report
from ftdiag.render.findings import checks_table, verdict_text

FULL_TABLE = 12  # show every layer up to this many, else the worst/best ones and totals
WORST, BEST = 5, 3


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.3g}" if isinstance(x, float) else str(x)


def layer_table(static: AdapterStats) -> Table | None:
    """Per-layer stats; large adapters summarised as the worst and best layers plus totals."""
    layers = static.layers or []
    if not layers:
        return None
    rated = any(ly.rel is not None for ly in layers)

    def sort_key(ly: LayerStat) -> float:
        v = ly.rel if rated else ly.delta_norm
        return float("-inf") if ly.b_zero else float(v) if v is not None else 0.0

    ordered = sorted(layers, key=sort_key)
    shown = ordered if len(ordered) <= FULL_TABLE else ordered[:WORST] + ordered[-BEST:]
    title = f"per-layer LoRA stats ({len(layers)} layers"
    title += ")" if len(shown) == len(layers) else f"; {WORST} weakest and {BEST} strongest)"
    table = Table(title=title, title_justify="left")
    for col in ("module", "r", "α", "scale", "dtype", "‖B‖", "‖ΔW‖", "‖W‖", "‖ΔW‖/‖W‖"):
        table.add_column(col, justify="left" if col == "module" else "right", no_wrap=True)
    for ly in shown:
        style = "red" if ly.b_zero or not ly.finite else ""
        table.add_row(Text(ly.module), str(ly.rank), _num(ly.alpha), _num(ly.scaling),
                      ly.dtype, _num(ly.b_norm), _num(ly.delta_norm),
                      _num(ly.w_norm), _num(ly.rel), style=style)
    return table


def totals_text(static: AdapterStats) -> Text:
    """One line: adapted vs expected modules, zero-B layers, ratio range."""
    t, base = static.totals, static.base
    parts = [f"adapted {_num(static.adapted_modules)}"
             f" / expected {_num(base.expected_modules if base else None)} modules",
             f"zero lora_B: {t.zero_b if t else 0}", f"r={t.ranks if t else None}",
             f"scaling={[round(s, 4) for s in t.scalings] if t else []}",
             f"dtypes={static.config.dtypes if static.config else None}"]
    if t is not None and t.rel_median is not None:
        parts.append(f"‖ΔW‖/‖W‖ min {t.rel_min:.2e} median {t.rel_median:.2e} "
                     f"max {t.rel_max:.2e}")
    elif base is not None and base.ratio_skipped:
        parts.append(f"ratio skipped ({base.ratio_skipped}); Σ‖ΔW‖ "
                     f"{t.delta_norm_sum if t else 0:.3g}")
    return Text("totals: " + "; ".join(parts), style="dim")


def status_table(runtime: RuntimeDetails | None) -> Table | None:
    """Runtime status lines (true/false with evidence) and the logit probe summary."""
    if runtime is None or not runtime.status:
        return None
    table = Table(title="runtime status", title_justify="left")
    table.add_column("status")
    table.add_column("value")
    table.add_column("evidence", overflow="fold")
    for ln in runtime.status:
        table.add_row(ln.name, Text(str(ln.value).lower(), style="green" if ln.good else "red"),
                      Text(ln.evidence))
    probe = runtime.probe
    if probe:
        table.add_row("logit probe", str(probe["prompts"]) + " prompts",
                      f"max |Δlogit| {probe['max_abs_diff']:.3g}, mean KL {probe['mean_kl']:.3g},"
                      f" greedy changed {probe['greedy_changed']}/{probe['prompts']}")
    return table


def print_check_report(report: Report, console: Console) -> None:
    """check-adapter's report: checks, layer stats, runtime status, verdict line."""
    if report.checks:
        console.print(checks_table(report.checks, title="check-adapter"))
    d = report.details
    if isinstance(d, CheckDetails) and d.static is not None:
        table = layer_table(d.static)
        if table is not None:
            console.print(table)
            console.print(totals_text(d.static))
    runtime = status_table(d.runtime if isinstance(d, CheckDetails) else None)
    if runtime is not None:
        console.print(runtime)
    console.print(verdict_text(report))


def print_folder_check(result: FolderCheck, console: Console) -> None:
    """One section per adapter in the folder, then the verdict over all of them."""
    if len(result.sections) == 1:
        print_check_report(result.report, console)
        return
    names = ", ".join(repr(s.name) for s in result.sections)
    console.print(Text(f"{len(result.sections)} adapters in this folder: {names}", style="bold"))
    for section in result.sections:
        console.rule(Text(f"adapter {section.name!r} ({section.path})"), align="left")
        print_check_report(section.report, console)
    console.rule()
    console.print(Text(f"over {len(result.sections)} adapters:", style="bold"))
    console.print(verdict_text(result.report))
