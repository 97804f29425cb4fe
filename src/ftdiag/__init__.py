"""ftdiag: find out why a LoRA/PEFT fine-tune gives the same output as the base model."""

from __future__ import annotations

from typing import Any

__all__ = ["Finding", "FtdiagCallback", "FtdiagError", "Report", "__version__", "audit_model",
           "check_adapter"]

from ftdiag._version import __version__
from ftdiag.errors import FtdiagError
from ftdiag.findings import Finding, Report


def check_adapter(*args: Any, **kwargs: Any) -> Report:
    """Run check-adapter's layered checks on a saved adapter (see ftdiag.adapters)."""
    from ftdiag.adapters.check import check_adapter as _check

    return _check(*args, **kwargs)


def audit_model(*args: Any, **kwargs: Any) -> Report:
    """Audit an already-loaded model object in your own app (R001-R006, R009)."""
    from ftdiag.adapters.runtime import audit_model as _audit

    return _audit(*args, **kwargs)


def __getattr__(name: str) -> Any:
    """`from ftdiag import FtdiagCallback` imports transformers only when asked for."""
    if name in ("FtdiagCallback", "FtdiagCheckError"):
        from ftdiag import callback

        return getattr(callback, name)
    raise AttributeError(f"module 'ftdiag' has no attribute {name!r}")
