"""Hugging Face Hub ids as transformers reads them: the local cache first, a download if allowed.

The user's environment decides everything (`HF_HUB_OFFLINE`, `HF_HUB_CACHE`, `HF_HOME`,
`HF_TOKEN`, `HF_ENDPOINT`): ftdiag never sets or overrides it. A cached snapshot is used
without touching the network; a download shows huggingface_hub's progress bars on stderr; an
id that is neither cached nor reachable is one `FtdiagError` saying which of offline mode, the
network, a missing repo/revision or a gated/private repo stopped it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftdiag.errors import FtdiagError

log = logging.getLogger(__name__)

# top-level files transformers loads (no sub-folders: onnx/, original/, checkpoints)
MODEL_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.jinja"]
MODEL_BIN_FILES = ["pytorch_model*.bin"]  # only when the repo has no safetensors weights
CONFIG_FILES = ["config.json"]  # all the static layer needs of a base (A005 then skips)
ADAPTER_FILES = ["*.json", "*.safetensors", "*.bin", "tokenizer*", "*.model", "*.txt",
                 "*.jinja"]
TOP_LEVEL_ONLY = ["*/*"]


def looks_like_repo_id(name: str) -> bool:
    """`ORG/NAME` or `NAME` as the Hub spells repo ids (never a path starting . / ~)."""
    if not name or name.startswith((".", "/", "~")) or "\\" in name:
        return False
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def has_config(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def has_model_weights(folder: Path) -> bool:
    """config.json and every weight shard (safetensors or .bin) present in `folder`."""
    if not has_config(folder):
        return False
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).is_file():
            try:
                shards = set(json.loads((folder / index).read_text())["weight_map"].values())
            except (OSError, ValueError, KeyError, AttributeError):
                return False
            return all((folder / s).is_file() for s in shards)
    return any((folder / n).is_file() for n in ("model.safetensors", "pytorch_model.bin"))


def has_adapter_files(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file() and any(
        (folder / n).is_file() for n in ("adapter_model.safetensors", "adapter_model.bin"))


def offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as huggingface_hub read it."""
    from huggingface_hub import constants

    check = getattr(constants, "is_offline_mode", None)  # huggingface_hub >= 1.x
    return bool(check() if check else constants.HF_HUB_OFFLINE)


def cache_root() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The snapshot folder of `repo_id` at `revision` in the local cache, or None (no network)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True,
                                      allow_patterns=["config.json", "adapter_config.json"]))
    except LocalEntryNotFoundError:  # incl. IncompleteSnapshotError
        return None
    except OSError as exc:  # unreadable cache folder
        log.debug("cache lookup of %s failed: %s", repo_id, exc)
        return None


def hub_snapshot(repo_id: str, revision: str | None = None, *, what: str = "model",
                 complete: Callable[[Path], bool] = has_model_weights,
                 patterns: list[str] | None = None,
                 fallback: list[str] | None = None) -> Path:
    """A local snapshot folder of `repo_id` holding what `complete` asks for.

    The cache first; else, unless offline, download the top-level files matching `patterns`
    (then `fallback`, e.g. .bin weights when there are no safetensors).
    """
    label = f"{repo_id}@{revision}" if revision else repo_id
    cached = cached_snapshot(repo_id, revision)
    if cached is not None and complete(cached):
        log.info("%s %s: cached snapshot %s", what, label, cached)
        return cached
    if offline():
        if cached is not None:
            raise FtdiagError(
                f"the cached snapshot of {what} {label} ({cached}) is incomplete and "
                "HF_HUB_OFFLINE is set", hint="unset HF_HUB_OFFLINE to download the rest")
        raise FtdiagError(
            f"{what} {label!r} is not a local folder and not in the Hugging Face cache "
            f"({cache_root()}); HF_HUB_OFFLINE is set",
            hint="unset HF_HUB_OFFLINE to download it, or pass "
                 + ("a local folder with --base" if what == "model" else "a local folder"))
    folder = _download(repo_id, revision, label, what, patterns)
    if not complete(folder) and fallback:
        folder = _download(repo_id, revision, label, what, fallback)
    if not complete(folder):
        raise FtdiagError(f"{what} {label} on the Hub has no usable files for ftdiag "
                          f"(looked for {', '.join((patterns or []) + (fallback or []))})",
                          hint="pass a local folder or a .gguf file")
    return folder


def _download(repo_id: str, revision: str | None, label: str, what: str,
              patterns: list[str] | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    log.info("downloading %s %s from the Hugging Face Hub into %s", what, label, cache_root())
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns,
                                      ignore_patterns=TOP_LEVEL_ONLY,
                                      tqdm_class=_bar_class(label)))
    except GatedRepoError as exc:
        raise FtdiagError(f"{what} {label} is gated: your token has no access to it ({_why(exc)})",
                          hint="accept its terms on huggingface.co, then set HF_TOKEN or run "
                               "`hf auth login`") from None
    except RepositoryNotFoundError as exc:
        raise FtdiagError(f"{what} {label!r} is not a local folder, and the Hub has no repo "
                          f"by that name visible to you ({_why(exc)})",
                          hint="check the spelling; for a private repo set HF_TOKEN or run "
                               "`hf auth login`") from None
    except RevisionNotFoundError:
        raise FtdiagError(f"{what} {repo_id} has no revision {revision!r} on the Hub",
                          hint="pass a branch, tag or commit of that repo to --revision") from None
    except LocalEntryNotFoundError as exc:  # the Hub could not be reached and nothing cached
        raise FtdiagError(f"{what} {label!r} is not a local folder nor in the Hugging Face cache,"
                          f" and the Hub cannot be reached ({_why(exc.__cause__ or exc)})",
                          hint="check the network/proxy (HF_ENDPOINT), or pass a local "
                               "folder") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        hint = ("set HF_TOKEN or run `hf auth login`" if status in (401, 403)
                else "try again later, or pass a local folder")
        raise FtdiagError(f"the Hub refused {what} {label} ({_why(exc)})", hint=hint) from None
    except OSError as exc:  # disk full, unwritable cache
        raise FtdiagError(f"cannot write {what} {label} into the Hugging Face cache "
                          f"{cache_root()}: {exc}") from None


def _why(exc: BaseException) -> str:
    """The first line of a huggingface_hub error, without its long advice."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _bar_class(label: str) -> Any:
    """Plain tqdm bars on stderr naming the repo (shown on a terminal, where the CLI hides
    transformers' own bars; off when stderr is not a terminal)."""
    from tqdm.auto import tqdm

    class DownloadBar(tqdm):  # type: ignore[misc]  # tqdm is untyped
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs.setdefault("disable", None)
            kwargs["desc"] = f"{label}: {kwargs.get('desc') or 'downloading'}"
            super().__init__(*args, **kwargs)

    return DownloadBar
