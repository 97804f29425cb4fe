"""An MLflow run's metric history and params, read through MLflow's own client.

URI is what users have: a sqlite file (MLflow 3's default `mlflow.db`; needs full `mlflow`), an
`http(s)://` tracking server (`mlflow-skinny` is enough), or a legacy file store (`./mlruns`,
`file:///.../mlruns`, which MLflow 3 opens only with MLFLOW_ALLOW_FILE_STORE=true: set here).
transformers' MLflowCallback logs `loss`, `eval_loss`, `grad_norm`, `learning_rate`, `epoch` with
step = the Trainer's global step; params are TrainingArguments (plus whatever the user logged).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ftdiag.errors import FtdiagError
from ftdiag.loss.log import LossLog, from_records
from ftdiag.loss.sources.runconfig import normalise

HINT_INSTALL = "pip install 'ftdiag[mlflow]', or pip install mlflow"
KEYS = {"loss": ("loss", "train/loss", "train_loss"),
        "eval_loss": ("eval_loss", "eval/loss", "val_loss"),
        "grad_norm": ("grad_norm", "train/grad_norm"),
        "learning_rate": ("learning_rate", "train/learning_rate", "lr"),
        "epoch": ("epoch", "train/epoch")}


def tracking_uri(uri: str) -> str:
    """A URI MLflow accepts, from a path or URI; local stores must exist (never created)."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https", "databricks"):
        return uri
    if parsed.scheme == "sqlite":
        local = Path(uri.removeprefix("sqlite:///"))  # sqlite:////abs or sqlite:///rel
        if not local.is_file():
            raise FtdiagError(f"{uri}: no such sqlite file ({local})",
                              "give the mlflow.db the runs were logged to")
        return uri
    if parsed.scheme == "file":
        local = Path(parsed.path)
        if not local.is_dir():
            raise FtdiagError(f"{uri}: no such MLflow file store", "give the mlruns folder")
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        return uri
    if parsed.scheme and len(parsed.scheme) > 1:  # c:\... is a path, not a scheme
        raise FtdiagError(f"{uri}: unsupported MLflow URI scheme '{parsed.scheme}'",
                          "use a sqlite file, sqlite:///path, http(s)://server or file:///mlruns")
    local = Path(uri).expanduser().resolve()
    if local.is_file():
        return f"sqlite:///{local}"
    if local.is_dir():
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        return local.as_uri()
    raise FtdiagError(f"{uri}: no such file or directory",
                      "give the mlflow.db file, the mlruns folder or the tracking server URL")


def read_mlflow_run(uri: str, run_id: str, *, loss_col: str = "loss",
                    eval_col: str = "eval_loss") -> LossLog:
    """Read one run's loss curves and params into a LossLog (format "mlflow")."""
    target = tracking_uri(uri)
    # a dead server should fail in seconds, not after MLflow's minutes of retries
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    try:
        import yaml  # an mlflow dependency: its file store keeps metadata in meta.yaml
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise FtdiagError("reading MLflow runs needs the mlflow package", HINT_INSTALL) from None
    try:
        client = MlflowClient(tracking_uri=target)
        run = client.get_run(run_id)
        keys = {**KEYS, "loss": (loss_col, *KEYS["loss"]),
                "eval_loss": (eval_col, *KEYS["eval_loss"])}
        logged = set(run.data.metrics)
        records: list[tuple[int, dict[str, Any]]] = []
        for col, names in keys.items():
            key = next((k for k in names if k in logged), None)
            if key:
                records += [(m.timestamp, {"step": m.step, col: m.value})
                            for m in client.get_metric_history(run_id, key)]
    except ImportError as exc:  # sqlite stores need sqlalchemy/alembic (full mlflow)
        raise FtdiagError(f"{uri}: this store needs the full mlflow package ({exc.name})",
                          HINT_INSTALL) from None
    except MlflowException as exc:
        if "Failed to establish" in str(exc) or "Max retries exceeded" in str(exc):
            raise FtdiagError(f"cannot reach the MLflow tracking server at {uri}",
                              "is it running? e.g. mlflow server --port 5000") from None
        raise FtdiagError(f"MLflow {uri}, run {run_id}: {_first_line(exc)}",
                          "check --mlflow-uri and --run-id; mlflow ui lists the runs") from None
    except OSError as exc:
        raise FtdiagError(f"MLflow {uri}: {_first_line(exc)}") from None
    except (yaml.YAMLError, RecursionError, ValueError, KeyError, TypeError, AttributeError) as exc:
        # MLflow's file store trusts its meta.yaml and metric files: a damaged one raises these
        raise FtdiagError(f"MLflow {uri}, run {run_id}: the store's files are damaged "
                          f"({type(exc).__name__}: {_first_line(exc)})") from None
    records.sort(key=lambda r: r[0])  # by time: the latest write of a step wins
    out = from_records(f"{uri}#{run_id}", "mlflow", [r for _, r in records], "step", "loss",
                        "eval_loss")
    out.label = run.info.run_name or run_id[:8]
    out.config = normalise(run.data.params)
    out.max_steps = out.config.get("max_steps")
    epochs = out.config.get("num_train_epochs")
    out.num_train_epochs = float(epochs) if epochs is not None else None
    if not any(k in logged for k in keys["loss"]):
        shown = ", ".join(sorted(logged)[:12]) or "none"
        out.notes.append(f"no loss metric in the MLflow run (metrics: {shown}); name it with "
                         "--loss-col")
    return out


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
