"""check-adapter: layered checks (static files first, then the loaded model) on a LoRA adapter."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ftdiag.adapters.files import read_adapter
from ftdiag.adapters.static import TINY_DELTA, run_static
from ftdiag.errors import FtdiagError
from ftdiag.findings import Report
from ftdiag.models import resolve_adapter_dir, resolve_model_dir

__all__ = ["check_adapter", "resolve_base"]

log = logging.getLogger(__name__)

NO_RUNTIME = {"A004": "adapter holds NaN/Inf (A004)"}


class AdapterLoadError(Exception):
    """PEFT/transformers refused the adapter for this base; `reason` is the loader's message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def resolve_base(adapter_dir: str | Path, base: str | Path | None,
                 config: dict[str, Any] | None, revision: str | None = None, *,
                 weights: bool = True) -> Path:
    """--base, else base_model_name_or_path (a local folder, .gguf, embedded name or Hub id)."""
    if base is not None:
        return resolve_model_dir(base, revision, weights=weights)
    recorded = (config or {}).get("base_model_name_or_path")
    if recorded:
        return resolve_model_dir(recorded, revision or (config or {}).get("revision"),
                                 weights=weights)
    raise FtdiagError(
        f"cannot tell the base model of {adapter_dir}: adapter_config.json records no "
        "base_model_name_or_path",
        hint="pass --base MODEL (a local HF folder, a .gguf file, 'smollm2-135m' or a Hub id)")


def check_adapter(adapter_dir: str | Path, base: str | Path | None = None,
                  probes: list[str] | None = None, static_only: bool = False, *,
                  model: Any = None, tokenizer: Any = None,
                  threshold: float = TINY_DELTA, revision: str | None = None,
                  adapter_revision: str | None = None) -> Report:
    """Static checks on the files, then (unless static_only) runtime checks on the loaded model.

    `adapter_dir` and `base` may be Hub ids (`revision` is the base's, `adapter_revision` the
    adapter's); the static layer needs only the base's config, so --static-only fetches no weights.
    """
    adapter_dir = resolve_adapter_dir(adapter_dir, adapter_revision)
    files = read_adapter(adapter_dir)
    base_dir: Path | None = None
    if files.config is not None:
        try:
            base_dir = resolve_base(adapter_dir, base, files.config, revision,
                                    weights=not static_only)
        except FtdiagError:
            if model is None:
                raise
    report = run_static(adapter_dir, base_dir, threshold=threshold)
    if base_dir is not None:
        report.details["base_dir"] = str(base_dir)
    if static_only:
        report.layers_skipped.setdefault("R", "--static-only")
    if "R" in report.layers_skipped:
        return report
    blocked = [why for code, why in NO_RUNTIME.items() if code in report.codes()]
    if blocked:
        report.layers_skipped["R"] = blocked[0]
        return report
    try:
        model, tokenizer = _load(adapter_dir, base_dir, model, tokenizer)
    except AdapterLoadError as exc:  # the adapter does not fit the base: a fail, never a skip
        if report.verdict != "fail":  # else a static fail (A006/A008/A011...) already says why
            from ftdiag.adapters.consistency import loader_failure

            report.add(loader_failure(exc.reason))
        report.layers_skipped["R"] = f"cannot load the adapter: {exc.reason[:300]}"
        return report
    except FtdiagError as exc:
        report.layers_skipped["R"] = f"cannot load the base: {exc.message[:300]}"
        return report
    runtime = _audit(model, tokenizer, probes, adapter_dir)
    report.add(*runtime.checks)
    report.layers_run.append("R")
    report.details.update(runtime.details)
    return report


def _load(adapter_dir: str | Path, base_dir: Path | None, model: Any,
          tokenizer: Any) -> tuple[Any, Any]:
    """The PeftModel and a raw tokenizer (adapter dir's, else the base's)."""
    if model is None:
        from ftdiag.models import load_adapter, load_base

        assert base_dir is not None
        loaded = load_base(base_dir)
        try:
            model = load_adapter(loaded, adapter_dir)
        except FtdiagError as exc:
            raise AdapterLoadError(str(exc.__cause__ or exc.message)) from exc
    if tokenizer is None:
        from transformers import AutoTokenizer

        for src in (Path(adapter_dir), base_dir):
            if src is not None and (src / "tokenizer_config.json").is_file():
                try:
                    tokenizer = AutoTokenizer.from_pretrained(str(src))
                    break
                except Exception as exc:  # unreadable tokenizer: try the next source
                    log.debug("tokenizer from %s failed: %s", src, exc)
    return model, tokenizer


def _audit(model: Any, tokenizer: Any, probes: list[str] | None,
           adapter_dir: str | Path) -> Report:
    from ftdiag.adapters.runtime import audit_model

    return audit_model(model, None, tokenizer, probes, adapter_dir)
