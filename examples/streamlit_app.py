"""Product descriptions from base, adapter (and merged) side by side, with adapter status.

Run: `pip install 'ftdiag[app]'` then `streamlit run examples/streamlit_app.py`.
Defaults come from FTDIAG_APP_BASE / FTDIAG_APP_ADAPTER / FTDIAG_APP_MERGED.
"""

from __future__ import annotations

import html
import os
import re
import threading
from typing import Any

import streamlit as st

from ftdiag.abtest.local import ABConfig, run_ab_test
from ftdiag.adapters.details import details_of
from ftdiag.adapters.runtime import audit_model
from ftdiag.errors import FtdiagError
from ftdiag.findings import Finding, Report
from ftdiag.model.load import load_adapter, load_base
from ftdiag.prompts.records import Record
from ftdiag.render.text import word_diff_html

# Material icons ship with Streamlit's own font: no emoji font needed. The word follows the icon.
STATUS_MARK = {"pass": ":green[:material/check_circle: pass]",
               "info": ":blue[:material/info: info]",
               "warn": ":orange[:material/warning: warn]",
               "fail": ":red[:material/cancel: fail]",
               "skip": ":gray[:material/remove: skip]"}
# One output per arm: wrapped prose (long unbroken runs broken too), never a horizontal scroll.
OUTPUT_STYLE = ("white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word;"
                "padding:.6rem .8rem;border:1px solid rgba(49,51,63,.2);border-radius:.5rem;"
                "line-height:1.5")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~:$]|^[#+\-])")


@st.cache_resource(show_spinner="Loading base + adapter (one copy of the weights)…")
def load(base: str, adapter: str) -> tuple[Any, Any, threading.Lock]:
    """Load the base once and wrap it with the adapter; the base arm is `disable_adapter()`.

    The model is shared by every session and rerun, and the base arm switches the adapter off
    for a moment: the lock keeps an audit and a generation from overlapping on it.
    """
    loaded = load_base(base)
    return load_adapter(loaded, adapter), loaded.tokenizer, threading.Lock()


def md_text(text: str) -> str:
    """`text` shown literally inside a Markdown cell (no emphasis, links or :shortcodes:)."""
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", " ")


def output_html(arm: str, body: str) -> str:
    """One arm's output as a wrapping block; `body` is already escaped HTML."""
    return (f"<div class='ftdiag-output' data-arm='{html.escape(arm)}' style='{OUTPUT_STYLE}'>"
            f"{body or '<i>(empty)</i>'}</div>")


def check_rows(checks: list[Finding]) -> list[dict[str, str]]:
    """The status table: each row under `Finding.label` (what a pass proves, what a fault is)."""
    return [{"status": STATUS_MARK.get(c.status, c.status), "code": c.code,
             "check": md_text(c.label), "evidence": md_text(c.evidence_text)} for c in checks]


def status_panel(report: Report, adapter: str) -> None:
    """Adapter status from ftdiag.audit_model: loaded, config names, active, eval mode, effect."""
    st.subheader(f"Adapter status: {report.verdict.upper()}")
    st.caption(f"adapter path: {adapter}")
    st.table(check_rows(report.checks), hide_index=True)
    runtime = details_of(report).runtime
    if runtime is not None and runtime.status:
        st.table([{"state": md_text(s.name), "value": md_text(str(s.value)),
                   "evidence": md_text(s.evidence)} for s in runtime.status], hide_index=True)


def main() -> None:
    st.set_page_config(page_title="ftdiag: base vs adapter", layout="wide")
    st.title("Product descriptions: base vs adapter")
    with st.sidebar:
        base = st.text_input("Base model", os.environ.get("FTDIAG_APP_BASE", "smollm2-135m"))
        adapter = st.text_input("Adapter dir", os.environ.get("FTDIAG_APP_ADAPTER", ""))
        merged = st.text_input("Merged model dir (optional)",
                               os.environ.get("FTDIAG_APP_MERGED", ""))
        max_new = st.slider("Max new tokens", 8, 256, 64)
    if not adapter:
        st.info("Enter an adapter directory in the sidebar.")
        return
    try:
        model, tokenizer, lock = load(base, adapter)
    except FtdiagError as exc:
        st.error(str(exc))
        return
    with lock:
        report = audit_model(model, tokenizer=tokenizer, adapter_dir=adapter)
    with st.expander("Adapter status", expanded=True):
        status_panel(report, adapter)
    title = st.text_input("Product title", "Stainless steel water bottle, 750 ml", key="title")
    if st.button("Generate", type="primary", key="generate") and title.strip():
        cfg = ABConfig(adapter_dir=adapter, base=base, merged_dir=merged or None,
                       max_new_tokens=max_new)
        try:
            with lock:
                result = run_ab_test(cfg, [Record(title.strip())], model=model,
                                     tokenizer=tokenizer)
        except FtdiagError as exc:
            st.error(str(exc))
            return
        outputs = result.rows[0].outputs
        for col, (arm, text) in zip(st.columns(len(outputs)), outputs.items(), strict=True):
            col.markdown(f"**{arm}**")
            col.html(output_html(arm, html.escape(text)))
        st.markdown("**diff base → adapter**")
        st.html(output_html("diff", word_diff_html(outputs.get("base", ""),
                                                   outputs.get("adapter", ""))))
        for f in result.report.findings:
            st.warning(f"{f.code} {f.label}: {f.message}")


main()
