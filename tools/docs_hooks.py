"""mkdocs hooks: pages that are generated from the code, never typed twice.

`<!-- ftdiag:codes -->` in a page becomes the finding-code table of `ftdiag.findings.CODES`;
`<!-- ftdiag:readme -->` becomes the README (the landing page), its `docs/` links made relative.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

MARKER = "<!-- ftdiag:codes -->"
README = "<!-- ftdiag:readme -->"
ROOT = Path(__file__).resolve().parents[1]


def codes_table() -> str:
    """The finding codes as a Markdown table, family by family, from findings.CODES."""
    from ftdiag.findings import CODES, LAYERS

    rows = ["| code | severity | layer | name | what it means | a finding says | a pass proves |",
            "|---|---|---|---|---|---|---|"]
    for info in CODES.values():
        layer = f"{info.layer} ({LAYERS[info.layer]})"
        rows.append(f"| {info.code} | {info.severity} | {layer} | `{info.name}` | "
                    f"{_cell(info.meaning)} | {_cell(info.title)} | {_cell(info.proves)} |")
    return "\n".join(rows)


def _cell(text: str) -> str:
    return text.replace("|", "\\|") or "—"


def readme() -> str:
    """README.md as a page of the site: its links into docs/ point at the pages beside it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.sub(r"\]\(docs/", "](", text)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Fill the generated parts of a page."""
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, codes_table())
    if README in markdown:
        markdown = markdown.replace(README, readme())
    return markdown
