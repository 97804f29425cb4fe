"""The adapter preflight, before anything is loaded: which base, layer S once, what it blocks.

check-adapter, ab-test, merge and doctor all start here, so each resolves the base, runs the static
layer and picks the tokenizer's folder the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ftdiag.adapters.files import read_adapter
from ftdiag.adapters.static import TINY_DELTA, run_static
from ftdiag.errors import FtdiagError
from ftdiag.findings import Report
from ftdiag.model.load import resolve_adapter_dir, resolve_model_dir
from ftdiag.timing import timed

# Static failures after which no text generated with the adapter can be trusted.
BLOCKING = frozenset({"A001", "A002", "A004", "A006", "A007", "A008", "A009", "A011"})
# Static failures after which the model cannot even be loaded for the runtime layer.
NO_RUNTIME = {"A004": "adapter holds NaN/Inf (A004)"}


@dataclass
class Preflight:
    """The static layer's report and the base it was checked against."""

    adapter_dir: Path
    base_dir: Path | None
    static: Report

    @property
    def blocked(self) -> bool:
        """A blocking static failure: do not load and generate."""
        return any(c.code in BLOCKING and c.status == "fail" for c in self.static.checks)

    @property
    def no_runtime(self) -> str | None:
        """Why the runtime layer cannot run (None: it can)."""
        if "R" in self.static.layers_skipped:
            return self.static.layers_skipped["R"]
        codes = self.static.codes()
        return next((why for code, why in NO_RUNTIME.items() if code in codes), None)


def recorded_base(adapter_dir: str | Path) -> str | None:
    """base_model_name_or_path from adapter_config.json (None when absent or unreadable)."""
    config = read_adapter(adapter_dir).config or {}
    name = config.get("base_model_name_or_path")
    return str(name) if name else None


def resolve_base(adapter_dir: str | Path, base: str | Path | None, revision: str | None = None,
                 *, weights: bool = True) -> Path:
    """--base, else the base the adapter records, as a local model folder.

    Either may be a Hub id (models.resolve_model_dir: the cache first, a download only where the
    environment allows it); `revision` defaults to the one PEFT recorded for the base.
    weights=False: the static layer needs only config.json.
    """
    if base is not None:
        return resolve_model_dir(base, revision, weights=weights)
    config = read_adapter(adapter_dir).config or {}
    recorded = config.get("base_model_name_or_path")
    if not recorded:
        raise FtdiagError(f"the adapter in {adapter_dir} does not name its base model",
                          hint="pass --base MODEL")
    return resolve_model_dir(str(recorded), revision or config.get("revision"), weights=weights)


def tokenizer_source(adapter_dir: str | Path, base_dir: Path | None) -> Path | None:
    """The tokenizer saved with the adapter when there is one, else the base's folder."""
    adapter = Path(adapter_dir)
    return adapter if (adapter / "tokenizer_config.json").is_file() else base_dir


@timed("static_checks")
def preflight(adapter_dir: str | Path, base: str | Path | None = None, *,
              base_required: bool = True, threshold: float = TINY_DELTA,
              revision: str | None = None, adapter_revision: str | None = None,
              weights: bool = True) -> Preflight:
    """Resolve the adapter and base (local folders or Hub ids) and run layer S (A001-A015).

    base_required=False: an unresolvable base only skips the base checks (the caller holds the
    model already); a missing folder is always an error.
    """
    adapter = resolve_adapter_dir(adapter_dir, adapter_revision)
    base_dir: Path | None = None
    if read_adapter(adapter).config is not None:  # raises for a missing folder
        try:
            base_dir = resolve_base(adapter, base, revision, weights=weights)
        except FtdiagError:
            if base_required:
                raise
    return Preflight(adapter, base_dir, run_static(adapter, base_dir, threshold=threshold))
