"""Read title → description records from local files: AmazonTitles trn.json, JSONL/JSON, CSV, TXT.

JSON and CSV go through `datasets` (local files only); a .txt file is one title per line. JSON is
checked by ftdiag.safeio first, since `datasets` crashes the process (a segfault) on some files:
pandas' ujson, its fallback, on a value nested ~10,000 levels deep; pyarrow on a lone `null`.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

from ftdiag.errors import FtdiagError
from ftdiag.safeio import MAX_LOG_BYTES, json_lines, parse_json, read_bytes

TITLE_FIELDS = ("title", "product_title", "name", "prompt", "input")
TEXT_FIELDS = ("content", "description", "text", "output", "completion", "response")
_FORMATS = {".json": "json", ".jsonl": "json", ".ndjson": "json", ".csv": "csv",
            ".txt": "text", ".tsv": "csv"}


@dataclass(frozen=True)
class Record:
    """One example: a title, its reference description (if any) and its id (if any)."""

    title: str
    content: str | None = None
    uid: str | None = None


def check_utf8(path: Path) -> None:
    """Raise a FtdiagError naming the line of the first non-UTF-8 byte."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            try:
                decoder.decode(chunk, final=not chunk)  # final: a sequence cut off at the end
            except UnicodeDecodeError as exc:
                seen = bytes(exc.object)  # bytes held from the last chunk + this one
                bad_line = line + seen[: exc.start].count(b"\n")
                raise FtdiagError(
                    f"{path} is not UTF-8 (byte {seen[exc.start]:#x} on line {bad_line})",
                    hint="re-encode it, e.g. iconv -f latin1 -t utf-8",
                ) from None
            if not chunk:
                return
            line += chunk.count(b"\n")


def file_format(path: Path) -> str:
    """json / csv / text, from the suffix (a trn.json of AmazonTitles is JSON lines)."""
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise FtdiagError(f"unsupported data file type {path.suffix or '(none)'}: {path}",
                          hint="use .json, .jsonl, .csv or .txt")
    return fmt


def check_data_file(path: str | Path) -> Path:
    """The path, checked: exists, is a non-empty file, is UTF-8."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FtdiagError(f"data file not found: {p}")
    if p.is_dir():
        raise FtdiagError(f"{p} is a directory, expected a data file")
    if p.stat().st_size == 0:
        raise FtdiagError(f"data file is empty: {p}")
    check_utf8(p)
    return p


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a JSON/JSONL/CSV file as dicts (via `datasets`), or {'title': line} for .txt."""
    p = check_data_file(path)
    fmt = file_format(p)
    if fmt == "text":
        lines = p.read_text(encoding="utf-8").splitlines()
        return [{"title": line.strip()} for line in lines if line.strip()]
    if fmt == "json":
        check_json(p)
    return _load_with_datasets(p, fmt)


def check_json(p: Path) -> None:
    """One JSON object per line (streamed), or one document holding objects: bad syntax, a
    too-deep nesting, a too-long line or another shape is one error."""
    values = json_lines(p, limit=None)
    try:
        first = next(values, None)
    except FtdiagError:
        first = None  # not JSON lines (a pretty-printed document): read it whole below
    if first is None:
        _check_document(parse_json(read_bytes(p, MAX_LOG_BYTES), p), p)
        return
    second = next(values, None)
    if second is None and not isinstance(first[1], dict):  # a one-line document
        _check_document(first[1], p)
        return
    for lineno, value in chain([first], [second] if second else [], values):
        if not isinstance(value, dict):
            raise FtdiagError(f"{p}:{lineno}: {type(value).__name__} where a JSON object was "
                              "expected", hint="give one record object per line")


def _check_document(doc: Any, p: Path) -> None:
    """An array of record objects, or one object (of columns, as `datasets` reads it)."""
    if not (isinstance(doc, dict) or (isinstance(doc, list) and all(isinstance(r, dict)
                                                                  for r in doc))):
        raise FtdiagError(f"{p} is not an array of JSON objects (records)",
                          hint="give an array of objects, or one object per line (JSONL)")


def _load_with_datasets(p: Path, fmt: str) -> list[dict[str, Any]]:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    kwargs: dict[str, Any] = {"sep": "\t"} if p.suffix.lower() == ".tsv" else {}
    try:
        rows = list(datasets.load_dataset(fmt, data_files=str(p), split="train", **kwargs))
    except Exception as exc:  # datasets wraps parse errors in several exception types, and
        # decoding rows raises more (KeyError on a key with a NUL byte, ValueError on keys
        # Arrow sees as duplicates)
        raise FtdiagError(f"cannot parse {p} as {fmt.upper()}: {_first_line(exc)}") from exc
    if not rows:
        raise FtdiagError(f"no records in {p}")
    return rows


def _first_line(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    text = str(cause).strip().splitlines()
    return text[0][:200] if text else type(cause).__name__


def pick_field(fields: list[str], wanted: str | None, candidates: tuple[str, ...],
               what: str, path: Path | str) -> str | None:
    """The field to use: `wanted` if given (must exist), else the first known candidate."""
    if wanted is not None:
        if wanted not in fields:
            raise FtdiagError(f"no {what} field '{wanted}' in {path}",
                              hint=f"fields found: {', '.join(fields) or 'none'}")
        return wanted
    return next((f for f in candidates if f in fields), None)


def read_records(path: str | Path, title_field: str | None = None,
                 text_field: str | None = None, *, require_text: bool = False) -> list[Record]:
    """Records with a title and, when the file has one, a reference description."""
    rows = read_rows(path)
    fields = list(rows[0].keys()) if rows else []
    tf = pick_field(fields, title_field, TITLE_FIELDS, "title", path)
    if tf is None:
        raise FtdiagError(f"no title field in {path}",
                          hint=f"fields found: {', '.join(fields)}; pass --title-field")
    xf = pick_field(fields, text_field, TEXT_FIELDS, "description", path)
    if require_text and xf is None:
        raise FtdiagError(f"no description field in {path}",
                          hint=f"fields found: {', '.join(fields)}; pass --text-field")
    uid_field = "uid" if "uid" in fields else None
    return [
        Record(
            title=_as_text(row.get(tf)),
            content=_as_text(row.get(xf)) if xf else None,
            uid=_as_text(row.get(uid_field)) if uid_field else None,
        )
        for row in rows
    ]


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def pick_records(titles: Path | None, from_train: Path | None, n: int, seed: int,
                 title_field: str | None = None,
                 reference_field: str | None = None) -> list[Record]:
    """ab-test's titles (with references when present) from `titles`, or n sampled `from_train`."""
    import random

    if (titles is None) == (from_train is None):
        raise FtdiagError("give exactly one of --titles FILE or --from-train DATA")
    source = titles or from_train
    assert source is not None
    records = [r for r in read_records(source, title_field, reference_field) if r.title.strip()]
    if not records:
        raise FtdiagError(f"no titles in {source}")
    if from_train is not None and n < len(records):
        records = random.Random(seed).sample(records, n)
    return records


def run_titles(run_dir: Path, titles: Path | None, n: int, seed: int = 0) -> list[Record]:
    """doctor's titles: `titles`, else those `ftdiag train` recorded, else its data; n sampled."""
    import random

    from ftdiag.runmeta import read_meta

    records: list[Record] = []
    if titles is not None:
        records = read_records(titles)
    elif (run_dir / "train_examples.jsonl").is_file():
        records = read_records(run_dir / "train_examples.jsonl")
    else:
        data = read_meta(run_dir).get("data") or {}
        path = data.get("path")
        if path and Path(path).is_file():
            records = read_records(path, data.get("title_field"), data.get("text_field"))
    records = [r for r in records if r.title.strip()]
    if len(records) > n:
        records = random.Random(seed).sample(records, n)
    return records
