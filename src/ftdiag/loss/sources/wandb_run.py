"""Weights & Biases run folders (`wandb/run-*/`, `wandb/offline-run-*/`) read offline.

The history sits in the run's binary transaction log `run-<id>.wandb`. It is read by wandb's own
reader, `wandb-core leet inspect --json` (the Go core shipped in the wandb wheel, extra
`ftdiag[wandb]`), which prints one JSON record per line: the `run` record (initial config),
`config` updates, `metric` definitions (the step metric) and `history` rows. wandb itself is not
imported (it costs about a second); its package folder is only located.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ftdiag.errors import FtdiagError
from ftdiag.loss.log import LossLog, from_records
from ftdiag.loss.sources.runconfig import normalise
from ftdiag.safeio import parse_json

HINT_INSTALL = "pip install 'ftdiag[wandb]', or pip install 'wandb>=0.31'"
# series -> W&B keys, first found wins: transformers' WandbCallback logs "train/loss", ...
KEYS = {"loss": ("train/loss", "loss", "train_loss"), "eval_loss": ("eval/loss", "eval_loss",
        "val_loss", "val/loss"), "grad_norm": ("train/grad_norm", "grad_norm"),
        "learning_rate": ("train/learning_rate", "learning_rate", "lr"),
        "epoch": ("train/epoch", "epoch"),
        "num_input_tokens_seen": ("train/num_input_tokens_seen", "num_input_tokens_seen")}


def find_run_file(path: Path) -> tuple[Path, int] | None:
    """The `.wandb` log of a run folder, or of the latest run in a `wandb/` dir (or its parent).

    Returns (file, number of runs it was chosen from), or None when `path` holds no W&B run.
    """
    own = sorted(path.glob("run-*.wandb"))
    if own:
        return own[-1], 1
    for root in (path, path / "wandb"):
        runs = sorted((p for p in root.glob("*run-*") if p.is_dir() and any(
            p.glob("run-*.wandb"))), key=lambda p: p.name.split("run-", 1)[-1])
        if runs:
            latest = root / "latest-run"
            chosen = latest.resolve() if latest.is_dir() and any(latest.glob("run-*.wandb")) \
                else runs[-1]
            return sorted(chosen.glob("run-*.wandb"))[-1], len(runs)
    return None


def read_wandb_run(file: Path, *, loss_col: str = "loss", eval_col: str = "eval_loss") -> LossLog:
    """Read a run's history and config from its `.wandb` transaction log."""
    config: dict[str, Any] = {}
    step_metric = None
    rows: list[dict[str, Any]] = []
    run_name = None
    for rec in _records(file):
        kind = rec.get("type")
        body = _object(rec.get(kind)) if isinstance(kind, str) else {}
        if kind == "history":
            rows.append(_object(body.get("item")))
        elif kind == "run":
            config.update(_object(_object(body.get("config")).get("update")))
            run_name = body.get("display_name") or body.get("run_id")
        elif kind == "config":
            config.update(_object(body.get("update")))
        elif kind == "metric":
            metric = body
            if isinstance(metric.get("step_metric"), str) and metric["step_metric"] and \
                    metric.get("glob_name") in ("*", "train/*", None):
                step_metric = metric["step_metric"]
    keys = {**KEYS, "loss": (loss_col, f"train/{loss_col}", *KEYS["loss"]),
            "eval_loss": (eval_col, f"eval/{eval_col}", *KEYS["eval_loss"])}
    present = set().union(*rows) if rows else set()
    chosen = {col: next((k for k in names if k in present), None) for col, names in keys.items()}
    step = next((k for k in (step_metric, "train/global_step", "_step") if k and k in present),
                "_step")
    records = [{"step": row.get(step), **{col: row[k] for col, k in chosen.items()
                                          if k and k in row}} for row in rows]
    out = from_records(str(file.parent), "wandb", records, "step", "loss", "eval_loss")
    config.pop("_wandb", None)
    out.config = normalise(config)
    out.max_steps = out.config.get("max_steps")
    epochs = out.config.get("num_train_epochs")
    out.num_train_epochs = float(epochs) if epochs is not None else None
    if not rows:
        out.notes.append("the W&B run logged no history rows")
    elif chosen["loss"] is None:
        found = ", ".join(sorted(k for k in present if not k.startswith("_"))[:12]) or "none"
        out.notes.append(f"no loss key in the W&B history (keys: {found}); name it with "
                         "--loss-col")
    if run_name:
        out.notes.append(f"W&B run {run_name}, step = {step}")
    return out


def _records(file: Path) -> Iterator[dict[str, Any]]:
    """The log's records as dicts, from wandb-core's `leet inspect --json`."""
    core = _core_path()
    cmd = [core, "leet", "inspect", "--no-observability", "--json", "--run-file", str(file),
           str(file.parent.parent)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "WANDB_MODE": "offline"}, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FtdiagError(f"{file}: wandb-core could not read the run log ({exc})") from None
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise FtdiagError(f"{file}: wandb could not read the run log: {why}",
                          f"needs wandb>=0.31: {HINT_INSTALL}")
    for line in proc.stdout.splitlines():
        head = line[:48]
        if any(f'"type":"{t}"' in head for t in ("history", "run", "config", "metric")):
            rec = parse_json(line, f"{file} (as wandb-core prints it)")
            if isinstance(rec, dict):
                yield rec


def _object(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else {} (a record shaped other than W&B writes it)."""
    return value if isinstance(value, dict) else {}


def _core_path() -> str:
    """wandb-core inside the installed wandb package (found without importing wandb)."""
    spec = importlib.util.find_spec("wandb")
    if spec is None or not spec.origin:
        raise FtdiagError("reading a W&B run folder needs the wandb package", HINT_INSTALL)
    core = Path(spec.origin).parent / "bin" / "wandb-core"
    if not core.is_file():
        raise FtdiagError(f"the installed wandb has no wandb-core ({core})", HINT_INSTALL)
    return str(core)
