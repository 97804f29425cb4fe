"""A real Hugging Face cache layout in a temp dir, written the way huggingface_hub writes it.

`models--ORG--NAME/blobs/<sha256>` hold the bytes, `snapshots/<40-hex commit>/<file>` are
relative symlinks to them, `refs/<branch>` holds the commit hash (no newline).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def fake_commit(label: str) -> str:
    """A 40-hex commit hash, stable per label."""
    return hashlib.sha1(label.encode()).hexdigest()


def cache_repo(cache: Path, repo_id: str, src: Path, *, ref: str = "main",
               commit: str | None = None, skip: tuple[str, ...] = ()) -> Path:
    """Put the top-level files of `src` into `cache` as snapshot `commit` of `repo_id`."""
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    commit = commit or fake_commit(f"{repo_id}@{ref}")
    snapshot = storage / "snapshots" / commit
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in sorted(src.iterdir()):
        if not file.is_file() or file.name in skip:
            continue
        data = file.read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / file.name
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(os.path.relpath(blob, snapshot), link)
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / ref).write_text(commit)
    return snapshot
