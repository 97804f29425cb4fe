"""Text primitives shared by the file renderers: Markdown cells, HTML page style, XML-safe text."""

from __future__ import annotations

import re
from html import escape
from typing import Any

_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str | None) -> str:
    """Text with the characters XML 1.0 cannot hold (model output has them) replaced."""
    return _NOT_XML.sub("\ufffd", text or "")


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
