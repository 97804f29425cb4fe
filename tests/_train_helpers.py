"""Small title → description datasets for the train/data tests (short, learnable, seeded)."""

from __future__ import annotations

import json
import random
from pathlib import Path

ITEMS = ["bottle", "shirt", "cable", "pan", "lamp", "book", "mug", "tent"]
COLOURS = ["red", "blue", "green", "black"]


def toy_records(n: int, seed: int = 0) -> list[dict[str, str]]:
    """`n` distinct short records whose description repeats the title's words in a fixed frame."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        item, colour = rng.choice(ITEMS), rng.choice(COLOURS)
        out.append({"uid": f"u{i}", "title": f"{colour} {item} {i}",
                    "content": f"A {colour} {item}. Good {item}."})
    return out


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
