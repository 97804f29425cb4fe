"""check-adapter: layered checks (static files first, then the loaded model) on a LoRA adapter."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ftdiag.adapters.details import details_of
from ftdiag.adapters.preflight import Preflight, preflight, resolve_base, tokenizer_source
from ftdiag.adapters.static import TINY_DELTA
from ftdiag.errors import FtdiagError
from ftdiag.findings import Report

__all__ = ["AdapterLoadError", "check_adapter", "details_of", "resolve_base", "runtime_layer"]

log = logging.getLogger(__name__)


class AdapterLoadError(Exception):
    """PEFT/transformers refused the adapter for this base; `reason` is the loader's message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_adapter(adapter_dir: str | Path, base: str | Path | None = None,
                  probes: list[str] | None = None, static_only: bool = False, *,
                  model: Any = None, tokenizer: Any = None,
                  threshold: float = TINY_DELTA, revision: str | None = None,
                  adapter_revision: str | None = None, runtime: str | None = None) -> Report:
    """Static checks on the files, then (unless static_only) runtime checks on the loaded model.

    runtime: a serving runtime (llama.cpp, vllm, sglang, ollama, tgi; NAME@VERSION) for layer T.

    `adapter_dir` and `base` may be Hub ids (`revision` is the base's, `adapter_revision` the
    adapter's); the static layer needs only the base's config, so --static-only fetches no weights.
    """
    pre = preflight(adapter_dir, base, base_required=model is None, threshold=threshold,
                    revision=revision, adapter_revision=adapter_revision,
                    weights=not static_only)
    report = pre.static
    if pre.base_dir is not None:
        details_of(report).base_dir = str(pre.base_dir)
    target_layer(report, pre, runtime)
    if static_only:
        report.layers_skipped.setdefault("R", "--static-only")
    why = pre.no_runtime or report.layers_skipped.get("R")
    if why:
        report.layers_skipped["R"] = why
        return report
    try:
        model, tokenizer = _load(pre, model, tokenizer)
    except AdapterLoadError as exc:  # the adapter does not fit the base: a fail, never a skip
        if report.verdict != "fail":  # else a static fail (A006/A008/A011...) already says why
            from ftdiag.adapters.consistency import loader_failure

            report.add(loader_failure(exc.reason))
        report.layers_skipped["R"] = f"cannot load the adapter: {exc.reason[:120]}..."
        return report
    except FtdiagError as exc:
        report.layers_skipped["R"] = f"cannot load the base: {exc.message[:300]}"
        return report
    from ftdiag.adapters.runtime import audit_runtime

    runtime_layer(report, audit_runtime(model, None, tokenizer, probes, adapter_dir).report)
    return report


def target_layer(report: Report, pre: Preflight, runtime: str | None) -> None:
    """Layer T (T001-T003) for --runtime, from the files layer S read; skipped without it."""
    if runtime is None:
        report.layers_skipped.setdefault("T", "no --runtime given")
        return
    from ftdiag.adapters.files import read_adapter
    from ftdiag.adapters.target import target_checks

    static = details_of(report).static
    files = read_adapter(pre.adapter_dir)
    if not files.complete or static is None:
        report.layers_skipped["T"] = "adapter files missing (A001)"
        return
    report.add(*target_checks(runtime, files, list(static.layers or []), pre.base_dir))
    report.layers_run.append("T")


def runtime_layer(report: Report, runtime: Report) -> Report:
    """Append the runtime layer's checks and details to a static report (check-adapter's shape)."""
    report.add(*runtime.checks)
    report.layers_run.append("R")
    details_of(report).runtime = details_of(runtime).runtime
    return report


def _load(pre: Preflight, model: Any, tokenizer: Any) -> tuple[Any, Any]:
    """The PeftModel and a raw tokenizer (adapter dir's, else the base's)."""
    if model is None:
        from ftdiag.model.load import load_adapter, load_base

        assert pre.base_dir is not None
        loaded = load_base(pre.base_dir)
        try:
            model = load_adapter(loaded, pre.adapter_dir)
        except FtdiagError as exc:
            from ftdiag.adapters.consistency import loader_reason

            raise AdapterLoadError(loader_reason(exc)) from exc
    if tokenizer is None:
        from transformers import AutoTokenizer

        for src in (tokenizer_source(pre.adapter_dir, None), pre.base_dir):
            if src is not None and (src / "tokenizer_config.json").is_file():
                try:
                    tokenizer = AutoTokenizer.from_pretrained(str(src))
                    break
                except Exception as exc:  # unreadable tokenizer: try the next source
                    log.debug("tokenizer from %s failed: %s", src, exc)
    return model, tokenizer
