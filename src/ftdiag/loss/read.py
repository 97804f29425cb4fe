"""Read training logs (trainer_state.json, TensorBoard, CSV/JSONL, W&B, ...) into one `LossLog`.

Every reader returns series sorted by step with duplicate steps merged (the latest occurrence
wins: a resumed run re-logs the steps after its checkpoint). A run directory with no log in it
gives an empty `LossLog` (the analysis reports L001); a path that does not exist, a truncated
JSON file or a CSV without the loss column raise `FtdiagError`.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from ftdiag.errors import FtdiagError
from ftdiag.loss.log import LossLog, _num, assign_series, from_records, jsonl_objects
from ftdiag.safeio import MAX_LOG_BYTES, checked_size, parse_json, read_bytes

log = logging.getLogger(__name__)

TB_TAGS = {"train": ("train/loss", "loss"), "eval": ("eval/loss", "eval_loss"),
           "grad_norm": ("train/grad_norm", "grad_norm"),
           "learning_rate": ("train/learning_rate", "learning_rate"),
           "epoch": ("train/epoch", "epoch"),
           "tokens": ("train/num_input_tokens_seen", "num_input_tokens_seen")}


def read_loss_log(path: str | Path, *, step_col: str = "step", loss_col: str = "loss",
                  eval_col: str = "eval_loss") -> LossLog:
    """Read a run dir, trainer_state.json, TensorBoard, CSV/JSONL, W&B run or LLaMA-Factory log."""
    path = Path(path)
    if not path.exists():
        raise FtdiagError(f"{path}: no such file or directory",
                          "give a run dir, trainer_state.json, TensorBoard dir, CSV or JSONL")
    cols = {"step_col": step_col, "loss_col": loss_col, "eval_col": eval_col}
    target = find_log_file(path, loss_col) if path.is_dir() else path
    if target is None:
        tables = _tables(path, loss_col)
        note = (f"several logs ({', '.join(p.name for p in tables)}): name one" if tables else
                "no trainer_state.json, checkpoint-*/trainer_state.json, trainer_log.jsonl, "
                "TensorBoard event file, W&B run, CSV or JSONL found")
        return LossLog(str(path), notes=[note])
    out = _read(target, loss_col, cols)
    if path.is_dir() and target.suffix == ".wandb":
        runs = _wandb_runs(path)
        if runs > 1:
            out.notes.append(f"{runs} W&B runs here: read the latest ({target.parent.name}); "
                             "pass a run folder to choose")
    if out.format != "wandb":
        _add_dir_config(out, path if path.is_dir() else path.parent)
    return out


def _read(target: Path, loss_col: str, cols: dict[str, str]) -> LossLog:
    name = target.name
    if name.endswith(".wandb"):
        from ftdiag.loss.sources.wandb_run import read_wandb_run

        return read_wandb_run(target, loss_col=loss_col, eval_col=cols["eval_col"])
    if target.is_dir() or name.startswith("events.out.tfevents"):
        return read_tensorboard(target, loss_col=loss_col, eval_col=cols["eval_col"])
    if name.endswith(".csv"):
        return read_csv(target, **cols)
    if name.endswith((".jsonl", ".ndjson")):
        from ftdiag.loss.sources import llamafactory

        if llamafactory.is_trainer_log(target):
            return llamafactory.read_trainer_log(target)
        return read_jsonl(target, **cols)
    return read_trainer_state(target)


def _wandb_file(path: Path) -> Path | None:
    from ftdiag.loss.sources.wandb_run import find_run_file

    found = find_run_file(path)
    return found[0] if found else None


def _wandb_runs(path: Path) -> int:
    from ftdiag.loss.sources.wandb_run import find_run_file

    found = find_run_file(path)
    return found[1] if found else 0


def _add_dir_config(out: LossLog, run_dir: Path) -> None:
    """Hyperparameters the run folder records (adapter_config.json, LLaMA-Factory, axolotl)."""
    from ftdiag.loss.sources.runconfig import dir_config

    dirs = [run_dir, run_dir.parent] if run_dir.name.startswith("checkpoint-") else [run_dir]
    for d in reversed(dirs):  # the checkpoint's own files win over the run's
        config, framework = dir_config(d)
        out.config.update(config)
        if framework:
            out.config.setdefault("framework", framework)
    out.max_steps = out.max_steps or out.config.get("max_steps")
    epochs = out.config.get("num_train_epochs")
    if out.num_train_epochs is None and epochs is not None:
        out.num_train_epochs = float(epochs)


def find_log_file(run_dir: Path, loss_col: str = "loss") -> Path | None:
    """The log inside a run dir: trainer_state.json, LLaMA-Factory's trainer_log.jsonl, newest
    checkpoint's trainer_state.json, TensorBoard, a W&B run, the one CSV/JSONL."""
    top = run_dir / "trainer_state.json"
    if top.is_file():
        return top
    factory = run_dir / "trainer_log.jsonl"  # LLaMA-Factory, newer than its last checkpoint
    if factory.is_file():
        return factory
    ckpts = [(int(m.group(1)), p) for p in run_dir.glob("checkpoint-*/trainer_state.json")
             if (m := re.fullmatch(r"checkpoint-(\d+)", p.parent.name))]
    if ckpts:
        return max(ckpts)[1]
    if _event_files(run_dir):
        return run_dir
    wandb = _wandb_file(run_dir)
    if wandb is not None:
        return wandb
    tables = _tables(run_dir, loss_col)
    return tables[0] if len(tables) == 1 else None


def _tables(run_dir: Path, loss_col: str) -> list[Path]:
    """CSV/JSONL files in `run_dir` whose start names the loss column (not data files)."""
    found = []
    for p in sorted(q for ext in ("*.csv", "*.jsonl", "*.ndjson") for q in run_dir.glob(ext)):
        try:
            with p.open(encoding="utf-8", errors="replace") as fh:
                head = fh.read(4096)
        except OSError:
            continue
        first = head.splitlines()[0] if head else ""
        if (p.suffix == ".csv" and loss_col in next(csv.reader([first]), [])) or \
                (p.suffix != ".csv" and f'"{loss_col}"' in head):
            found.append(p)
    return found


def read_trainer_state(path: Path) -> LossLog:
    """Read a transformers `trainer_state.json` (its log_history and run totals)."""
    state = parse_json(read_bytes(path, MAX_LOG_BYTES), path,
                       "the file is truncated or was being written when training stopped; try "
                       "a checkpoint-*/trainer_state.json")
    if isinstance(state, list):  # a bare log_history list, as some scripts save it
        state = {"log_history": state}
    if not isinstance(state, dict):
        raise FtdiagError(f"{path}: not a trainer_state.json (top level is not an object)")
    history = state.get("log_history")
    if not isinstance(history, list):
        raise FtdiagError(f"{path}: no log_history list", "is this a trainer_state.json?")
    out = from_records(str(path), "trainer_state", [r for r in history if isinstance(r, dict)],
                        "step", "loss", "eval_loss")
    out.global_step = _int(state.get("global_step")) or out.global_step
    out.max_steps = _int(state.get("max_steps")) or None
    out.num_train_epochs = _num(state.get("num_train_epochs"))
    tokens = _int(state.get("num_input_tokens_seen"))
    out.tokens_seen = tokens or out.tokens_seen
    if not history:
        out.notes.append("log_history is empty (saved before the first logging step?)")
    return out


def read_jsonl(path: Path, *, step_col: str = "step", loss_col: str = "loss",
               eval_col: str = "eval_loss") -> LossLog:
    """Read one JSON object per line (e.g. a W&B/Lightning export)."""
    records = list(jsonl_objects(path, "truncated or not a JSONL log"))
    _require_column(path, loss_col, eval_col, sorted({k for r in records for k in r}))
    return from_records(str(path), "jsonl", records, step_col, loss_col, eval_col)


def read_csv(path: Path, *, step_col: str = "step", loss_col: str = "loss",
             eval_col: str = "eval_loss") -> LossLog:
    """Read a CSV export with step/loss/eval_loss columns (names configurable)."""
    checked_size(path, MAX_LOG_BYTES)
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            columns = [c for c in (reader.fieldnames or []) if c]
            records = [{k: _cell(v) for k, v in row.items() if isinstance(k, str) and k
                        and isinstance(v, str) and v} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FtdiagError(f"{path}: cannot read as CSV ({exc})") from None
    _require_column(path, loss_col, eval_col, columns)
    return from_records(str(path), "csv", records, step_col, loss_col, eval_col)


def read_tensorboard(path: Path, *, loss_col: str = "loss", eval_col: str = "eval_loss") -> LossLog:
    """Read scalars from a TensorBoard event file, or every event file under a directory.

    Tags: transformers' `train/loss`, `eval/loss`, ... first, then `loss_col` / `eval_col`.
    """
    try:
        from tensorboard.backend.event_processing import event_accumulator as ea
    except ImportError:
        raise FtdiagError("reading TensorBoard logs needs the tensorboard package",
                          "pip install tensorboard  (or 'ftdiag[tensorboard]')") from None
    files = [path] if path.is_file() else _event_files(path)
    if not files:
        return LossLog(str(path), notes=["no TensorBoard event files found"])
    wanted = {**TB_TAGS, "train": ("train/loss", loss_col, f"train/{loss_col}"),
              "eval": ("eval/loss", eval_col, f"eval/{eval_col}")}
    events: dict[str, list[tuple[float, int, float]]] = {k: [] for k in wanted}
    for file in files:
        acc = ea.EventAccumulator(str(file), size_guidance={ea.SCALARS: 0},
                                  purge_orphaned_data=False)
        try:
            acc.Reload()
        except Exception as exc:  # tensorboard raises its own corruption errors
            raise FtdiagError(f"{file}: cannot read TensorBoard events ({exc})") from None
        tags = set(acc.Tags().get("scalars", []))
        for key, names in wanted.items():
            tag = next((t for t in names if t in tags), None)
            if tag:
                events[key].extend((e.wall_time, e.step, e.value) for e in acc.Scalars(tag))
    out = LossLog(str(path), "tensorboard")
    for key, rows in events.items():
        rows.sort(key=lambda r: r[0])  # by wall time: the latest write of a step wins
        steps = np.array([r[1] for r in rows], dtype=np.int64)
        values = np.array([r[2] for r in rows], dtype=np.float64)
        assign_series(out, key, steps, values)
    if len(files) > 1:
        out.notes.append(f"merged {len(files)} event files")
    return out


def _event_files(root: Path) -> list[Path]:
    return sorted(root.rglob("events.out.tfevents*"), key=lambda p: p.stat().st_mtime)


def _require_column(path: Path, loss_col: str, eval_col: str, columns: list[str]) -> None:
    if not columns:  # an empty file: nothing logged yet (L001), not a format error
        return
    if loss_col not in columns and eval_col not in columns:
        found = ", ".join(columns) or "none"
        raise FtdiagError(f"{path}: no '{loss_col}' column (columns found: {found})",
                          "name it with --loss-col / --step-col / --eval-col")


def _cell(value: str) -> Any:
    try:
        return float(value)
    except ValueError:
        return value


def _int(value: Any) -> int | None:
    v = _num(value)
    return int(v) if math.isfinite(v) else None
