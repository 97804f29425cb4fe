"""The seed's app, done right: base vs adapter (vs merged) side by side, with adapter status.

Run: `pip install 'ftdiag[app]'` then `streamlit run examples/streamlit_app.py`.
Defaults come from FTDIAG_APP_BASE / FTDIAG_APP_ADAPTER / FTDIAG_APP_MERGED.
"""

from __future__ import annotations

import difflib
import html
import os
from typing import Any

import streamlit as st

from ftdiag.abtest import ABConfig, run_ab_test
from ftdiag.adapters.runtime import audit_model
from ftdiag.errors import FtdiagError
from ftdiag.models import load_adapter, load_base
from ftdiag.records import Record

STATUS_ICON = {"pass": "✅", "info": "ℹ️", "warn": "⚠️", "fail": "❌", "skip": "➖"}


@st.cache_resource(show_spinner="Loading base + adapter (one copy of the weights)…")
def load(base: str, adapter: str) -> tuple[Any, Any, Any]:
    """Load the base once and wrap it with the adapter; the base arm is `disable_adapter()`."""
    loaded = load_base(base)
    return loaded, load_adapter(loaded, adapter), loaded.tokenizer


def word_diff(a: str, b: str) -> str:
    """HTML of `b` with words not in `a` highlighted green and removed words struck red."""
    aw, bw = a.split(), b.split()
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=aw, b=bw).get_opcodes():
        if op == "equal":
            out.append(html.escape(" ".join(bw[j1:j2])))
            continue
        if i2 > i1:
            out.append(f"<del style='background:#ffd7d5'>{html.escape(' '.join(aw[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins style='background:#ccffd8'>{html.escape(' '.join(bw[j1:j2]))}</ins>")
    return " ".join(out)


def status_panel(model: Any, tokenizer: Any, adapter: str) -> None:
    """Adapter status from ftdiag.audit_model: loaded, config names, active, eval mode, effect."""
    report = audit_model(model, tokenizer=tokenizer, adapter_dir=adapter)
    st.subheader(f"Adapter status: {report.verdict.upper()}")
    st.caption(f"adapter path: {adapter}")
    st.table([{"": STATUS_ICON.get(c.status, "?"), "code": c.code, "check": c.title,
               "evidence": c.message} for c in report.checks])
    status = report.details.get("status") if isinstance(report.details, dict) else None
    if status:
        st.json(status, expanded=False)


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
        _, model, tokenizer = load(base, adapter)
    except FtdiagError as exc:
        st.error(str(exc))
        return
    with st.expander("Adapter status", expanded=True):
        status_panel(model, tokenizer, adapter)
    title = st.text_input("Product title", "Stainless steel water bottle, 750 ml", key="title")
    if st.button("Generate", type="primary", key="generate") and title.strip():
        cfg = ABConfig(adapter_dir=adapter, base=base, merged_dir=merged or None,
                       max_new_tokens=max_new)
        try:
            result = run_ab_test(cfg, [Record(title.strip())], model=model, tokenizer=tokenizer)
        except FtdiagError as exc:
            st.error(str(exc))
            return
        row = result.rows[0]
        outputs = row["outputs"] if isinstance(row, dict) else row.outputs
        cols = st.columns(len(outputs))
        for col, (arm, text) in zip(cols, outputs.items(), strict=True):
            col.markdown(f"**{arm}**")
            col.code(text or "(empty)", language=None)
        st.markdown("**diff base → adapter**")
        st.markdown(word_diff(outputs.get("base", ""), outputs.get("adapter", "")),
                    unsafe_allow_html=True)
        for f in result.report.findings:
            st.warning(f"{f.code} {f.title}: {f.message}")


main()
