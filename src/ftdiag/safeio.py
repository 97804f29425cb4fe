"""Bounded reading of the JSON and YAML files ftdiag is given: size, depth and node limits.

Every way such a file can fail (unreadable, too big, not UTF-8, bad syntax, nested deeper than
MAX_DEPTH, an integer too long for Python, a YAML alias bomb) is one `FtdiagError` naming the
file. Nothing in a file is executed: YAML goes through `safe_load`, JSON through a decoder.
"""

from __future__ import annotations

import json
import stat
import sys
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import Any

from ftdiag.errors import FtdiagError

MiB = 1 << 20
MAX_CONFIG_BYTES = 16 * MiB  # JSON configs and metadata, a Modelfile
MAX_LOG_BYTES = 256 * MiB  # a trainer_state.json, a CSV/JSONL log, a JSON document of data
MAX_LINE_BYTES = 16 * MiB  # one line of a JSON-lines file
MAX_YAML_CHARS = 256 * 1024  # PyYAML builds ~0.2-1 MB/s (real run configs are under 20 kB)
MAX_DEPTH = 100  # arrays/objects inside each other (real files stay under 10)
MAX_NODES = 1_000_000  # YAML values once aliases are expanded (an alias bomb stops here)
_CONTAINERS = frozenset((dict, list, tuple, set, frozenset))
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')


def _too_big(path: Path | str, size: int, limit: int) -> FtdiagError:
    return FtdiagError(f"{path} is {size / MiB:.1f} MB, over ftdiag's limit of "
                       f"{limit / MiB:.0f} MB for this file",
                       hint="is it the right file? ftdiag refuses it rather than fill memory")


def checked_size(path: Path, limit: int) -> int:
    """The size of a regular file at `path`, refused past `limit` or when it is not a file."""
    try:
        st = path.stat()
    except OSError as exc:
        raise FtdiagError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise FtdiagError(f"{path} is not a regular file")
    if st.st_size > limit:
        raise _too_big(path, st.st_size, limit)
    return st.st_size


def read_bytes(path: Path, limit: int = MAX_CONFIG_BYTES) -> bytes:
    """A regular file's bytes, at most `limit` of them (a FIFO or /dev/zero never blocks)."""
    checked_size(path, limit)
    try:
        with path.open("rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise FtdiagError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise _too_big(path, len(data), limit)
    return data


def decode_utf8(data: bytes, source: Path | str) -> str:
    """`data` as text; a non-UTF-8 byte is one error naming its offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FtdiagError(f"{source} is not UTF-8 text (byte {data[exc.start]:#x} at offset "
                          f"{exc.start})") from None


def read_text(path: Path, limit: int = MAX_CONFIG_BYTES) -> str:
    """A UTF-8 text file, at most `limit` bytes."""
    return decode_utf8(read_bytes(path, limit), path)


def parse_json(data: bytes | str, source: Path | str, hint: str = "") -> Any:
    """One JSON document, NaN/Infinity allowed (json.dumps writes them), nesting ≤ MAX_DEPTH.

    orjson first (fast, and it stops at 1024 levels by itself); the stdlib reads what orjson
    refuses (NaN literals, integers past 64 bits) and stops at Python's recursion limit.
    """
    import orjson

    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        text = decode_utf8(data, source) if isinstance(data, bytes) else data
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            where = f"column {exc.colno}" if exc.lineno == 1 else \
                f"line {exc.lineno} column {exc.colno}"
            raise FtdiagError(f"{source}: invalid JSON at {where} ({exc.msg})", hint) from None
        except RecursionError:
            raise _too_deep(source) from None
        except ValueError as exc:  # an integer literal past Python's 4300-digit limit
            raise FtdiagError(f"{source}: invalid JSON ({exc})", hint) from None
    depth = json_text_depth(data) if isinstance(data, bytes) and len(data) >= MiB else None
    if depth is None:
        check_shape(value, source)
    elif depth > MAX_DEPTH:
        raise _too_deep(source)
    return value


def json_text_depth(data: bytes) -> int | None:
    """The nesting depth of valid JSON text from its brackets, in C (bytes ops, numpy): 3x
    cheaper than `check_shape` on a 12 MB trainer_state.json. None when a string holds a
    bracket (its quotes then survive the removal of empty strings)."""
    import numpy as np

    if b"\\" in data:  # drop escaped backslashes, then escaped quotes: the rest is structure
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = data.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in brackets:
        return None
    chars = np.frombuffer(brackets, np.uint8)
    steps = np.where((chars == ord("[")) | (chars == ord("{")), np.int8(1), np.int8(-1))
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


def read_json(path: Path, limit: int = MAX_CONFIG_BYTES, hint: str = "") -> Any:
    """A JSON file, bounded by `limit` bytes and MAX_DEPTH levels."""
    return parse_json(read_bytes(path, limit), path, hint)


def read_json_object(path: Path, limit: int = MAX_CONFIG_BYTES) -> dict[str, Any]:
    """A JSON file that must hold an object (a config), bounded like `read_json`."""
    value = read_json(path, limit)
    if not isinstance(value, dict):
        raise FtdiagError(f"{path} does not hold a JSON object")
    return value


def json_lines(path: Path, hint: str = "", limit: int | None = MAX_LOG_BYTES
               ) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line of a JSON-lines file, read line by line.

    `limit` bounds the file (None: data files, streamed); a line is at most MAX_LINE_BYTES.
    """
    checked_size(path, sys.maxsize if limit is None else limit)
    try:
        with path.open("rb") as fh:
            lineno = 0
            while line := fh.readline(MAX_LINE_BYTES + 1):
                lineno += 1
                if len(line) > MAX_LINE_BYTES:
                    raise FtdiagError(f"{path}:{lineno}: a line longer than "
                                      f"{MAX_LINE_BYTES // MiB} MB", hint)
                if line.strip():
                    yield lineno, parse_json(line, f"{path}:{lineno}", hint)
    except OSError as exc:
        raise FtdiagError(f"cannot read {path}: {exc.strerror or exc}") from None


def parse_yaml(text: str, source: Path | str) -> Any:
    """One YAML document through PyYAML's safe loader (no tags that build objects; libyaml's
    when installed), bounded in size, depth and nodes after aliases are expanded."""
    import yaml

    if len(text) > MAX_YAML_CHARS:
        raise FtdiagError(f"{source}: {len(text):,} characters of YAML, over ftdiag's limit "
                          f"of {MAX_YAML_CHARS:,}", hint="is it the right file?")
    try:
        value = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except RecursionError:
        raise _too_deep(source) from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        why = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise FtdiagError(f"{source}: invalid YAML ({why})") from None
    check_shape(value, source, max_nodes=MAX_NODES)
    return value


def check_shape(value: Any, source: Path | str, max_nodes: int | None = None) -> None:
    """Refuse nestings deeper than MAX_DEPTH and, with `max_nodes`, more values than that
    (counted with repeats, so shared YAML anchors count each time they are used).

    Walks level by level, in C where it can (map/chain): 0.05 s on a 12 MB trainer_state.json,
    so big JSON texts take the `json_text_depth` shortcut first.
    """
    level = [value] if type(value) in _CONTAINERS else []
    depth = nodes = 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise _too_deep(source)
        if max_nodes is not None:
            nodes += sum(map(len, level))
            if nodes > max_nodes:
                raise FtdiagError(f"{source}: more than {max_nodes:,} values once YAML "
                                  "aliases are expanded (an alias bomb?)")
        dicts = [v for v in level if type(v) is dict]
        others = [v for v in level if type(v) is not dict] if len(dicts) < len(level) else []
        if _CONTAINERS.isdisjoint(set(map(type, _children(dicts, others)))):
            return
        level = [c for c in _children(dicts, others) if type(c) in _CONTAINERS]


def _children(dicts: list[dict[Any, Any]], others: list[Any]) -> Iterator[Any]:
    return chain(chain.from_iterable(map(dict.values, dicts)), chain.from_iterable(others))


def _too_deep(source: Path | str) -> FtdiagError:
    return FtdiagError(f"{source}: nested deeper than {MAX_DEPTH} levels",
                       hint="no real config or log nests like this: the file is damaged or "
                            "built to break readers")
