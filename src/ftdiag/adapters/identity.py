"""A008 (warn): is the base given the one the adapter was trained on? Name and weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftdiag.adapters.fingerprint import weights_fingerprint
from ftdiag.findings import Finding, finding, passed
from ftdiag.model.load import EMBEDDED_NAME, is_embedded_name
from ftdiag.runmeta import read_meta

HINT = "pass the base the adapter was trained on (--base), or re-train on this one"


def recorded_fingerprint(adapter_dir: str | Path) -> str | None:
    """The base fingerprint `ftdiag train` (or FtdiagCallback) recorded in ftdiag_meta.json.

    Looked up beside the adapter, then in the run folder above a checkpoint-N.
    """
    path = Path(adapter_dir)
    for folder in (path, path.parent):
        fp = read_meta(folder).get("base_fingerprint")
        if fp:
            return str(fp)
    return None


def base_identity(config: dict[str, Any], base_dir: Path, adapter_dir: str | Path) -> Finding:
    """A008 (warn) when the recorded base name/path or its weights differ from the base given."""
    name = config.get("base_model_name_or_path")
    recorded_fp = recorded_fingerprint(adapter_dir)
    if not name and not recorded_fp:
        return passed("A008", "no base_model_name_or_path recorded")
    same_name = _same_name(str(name), base_dir) if name else None
    local = _local_folder(str(name)) if name else None
    if recorded_fp is None and local is not None and local.resolve() != base_dir.resolve():
        recorded_fp = weights_fingerprint(local)
    given_fp = weights_fingerprint(base_dir) if recorded_fp else None
    differs = []
    if same_name is False:
        differs.append("name")
    if recorded_fp and given_fp and recorded_fp != given_fp:
        differs.append("weights")
    evidence = {"recorded": name, "given": str(base_dir), "recorded_fingerprint": recorded_fp,
                "given_fingerprint": given_fp, "differs": differs}
    if "weights" in differs or (differs and not (recorded_fp and given_fp)):
        what = " and ".join(differs) + (" differ" if len(differs) > 1 else " differs")
        fps = (f" (weights {recorded_fp} vs {given_fp})" if "weights" in differs else
               " (weights not compared: no fingerprint of the recorded base)" if not recorded_fp
               else " (weights not compared: the base given has no safetensors)")
        return finding("A008", f"the adapter was trained on {name or 'a recorded base'!s}, but "
                               f"the base given is {base_dir}: {what}{fps}",
                       status="warn", hint=HINT, **evidence)
    if recorded_fp and given_fp:
        also = f"; name differs ({name!r}), weights equal" if differs else ""
        return passed("A008", f"base weights match the recorded base ({given_fp}){also}",
                      **evidence)
    return passed("A008", f"base_model_name_or_path {name!r} is the base given", **evidence)


def _local_folder(name: str) -> Path | None:
    p = Path(name).expanduser()
    return p if (p / "config.json").is_file() else None


def _same_name(name: str, base_dir: Path) -> bool:
    """Does the recorded name/path denote `base_dir`? (local path, embedded name, hub id)"""
    if is_embedded_name(name):
        return _source(base_dir).get("name") == EMBEDDED_NAME
    local = _local_folder(name)
    if local is not None:
        return local.resolve() == base_dir.resolve()
    source = _source(base_dir).get("source")
    if name.endswith(".gguf"):
        if source:
            return Path(source).resolve() == Path(name).expanduser().resolve()
        return base_dir.name.startswith(Path(name).stem)
    # a hub id or a path from another machine: the folder (or its hub-cache name) must match
    parts = name.rstrip("/").split("/")
    tail = parts[-1].lower()
    cached = "models--" + "--".join(parts[-2:]).lower()
    return any(p.lower() in (tail, cached) for p in base_dir.resolve().parts)


def _source(base_dir: Path) -> dict[str, Any]:
    """ftdiag_source.json of a converted GGUF/embedded base ({} otherwise)."""
    src = base_dir / "ftdiag_source.json"
    try:
        data = json.loads(src.read_text(encoding="utf-8")) if src.is_file() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
