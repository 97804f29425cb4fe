"""Pinned `--json` schemas: keys, value types and the row shape of every list.

A schema mirrors the document: a dict of keys (a key ending in '?' is a row key that not every
row of its list has), a list holds the one shape every row must fit, and a leaf names the JSON
types seen there, joined by '|' (str, int, float, bool, null). Keys in OPAQUE are free-form
(`evidence`: an object per finding, a text or null elsewhere) and pinned as "any". Rewritten
by `make schemas` (pytest --write-schemas), never silently: the diff is shown for review.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).parent / "schemas"
OPAQUE = {"evidence"}
WRITE = False  # set from pytest's --write-schemas (conftest.py)
TYPES = {str: "str", int: "int", float: "float", bool: "bool", type(None): "null"}


def schema(value: Any) -> Any:
    """The schema of one JSON value; a list's rows merged into one row shape."""
    if isinstance(value, dict):
        return {k: "any" if k in OPAQUE else schema(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        rows = [schema(v) for v in value]
        return [_merge_rows(rows)] if rows else []
    return TYPES[type(value)]


def _merge_rows(rows: list[Any]) -> Any:
    if all(isinstance(r, dict) for r in rows):
        keys = sorted({k.rstrip("?") for r in rows for k in r})
        out = {}
        for k in keys:
            present = [r.get(k, r.get(k + "?")) for r in rows if k in r or k + "?" in r]
            every = all(k in r for r in rows)
            out[k if every else k + "?"] = _merge_rows(present)
        return out
    if all(isinstance(r, list) for r in rows):
        inner = [r[0] for r in rows if r]
        return [_merge_rows(inner)] if inner else []
    if all(isinstance(r, str) for r in rows):
        return "|".join(sorted({t for r in rows for t in r.split("|")}))
    return "any"  # a dict in one row, a leaf in another


def conforms(value: Any, pinned: Any, where: str = "$") -> list[str]:
    """Where `value` departs from the pinned schema (empty: it fits)."""
    if pinned == "any":
        return []
    if isinstance(pinned, str):
        got = TYPES.get(type(value), type(value).__name__)
        return [] if got in pinned.split("|") else [f"{where}: {got}, expected {pinned}"]
    if isinstance(pinned, list):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        if not pinned:  # no row was seen when it was pinned
            return []
        return [e for i, row in enumerate(value) for e in conforms(row, pinned[0], f"{where}[{i}]")]
    if not isinstance(value, dict):
        return [f"{where}: expected an object"]
    keys = {k.rstrip("?"): k for k in pinned}
    errors = [f"{where}.{k}: missing" for k in pinned if not k.endswith("?") and k not in value]
    errors += [f"{where}.{k}: not in the schema" for k in value if k not in keys]
    for k, v in value.items():
        if k in keys:
            errors += conforms(v, pinned[keys[k]], f"{where}.{k}")
    return errors


def pin(name: str, doc: dict[str, Any]) -> None:
    """`doc` fits tests/schemas/NAME.json (with --write-schemas: rewrite that file first)."""
    path = SCHEMAS / f"{name}.json"
    if WRITE:
        path.write_text(json.dumps(schema(doc), indent=1, sort_keys=True) + "\n",
                        encoding="utf-8")
    errors = conforms(doc, json.loads(path.read_text(encoding="utf-8")))
    assert not errors, f"--json of {name} departs from {path.name} (`make schemas` to " \
                       "re-pin an intended change):\n" + "\n".join(errors[:30])
