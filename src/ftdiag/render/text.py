"""Text primitives shared by the file renderers: Markdown cells and blocks, XML-safe text."""

from __future__ import annotations

import re
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
