"""`check-export`: is the merged folder, merged GGUF or LoRA GGUF really the trained adapter?

Reads lazily: safetensors headers and only the adapted modules' tensors; GGUF tensors are
dequantized one at a time. No model is loaded.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ftdiag.errors import FtdiagError
from ftdiag.export.delta import (
    MergedTotals,
    ModuleCheck,
    compare_module,
    merged_findings,
    missing,
    totals,
)
from ftdiag.export.lora import LoraAdapter, read_lora
from ftdiag.export.weights import GgufModel, SafetensorsFolder, WeightSource, open_gguf
from ftdiag.findings import Details, Finding, Report

log = logging.getLogger(__name__)

ExportKind = Literal["merged-safetensors", "merged-gguf", "lora-gguf"]
GGUF_MAGIC = b"GGUF"
THREADS = 4


@dataclass
class ExportDetails(Details):
    """What check-export looked at and what it measured (the `details` of its report)."""

    export: str
    kind: ExportKind
    adapter: str
    base: str | None = None
    modules: list[ModuleCheck] = field(default_factory=list)
    totals: MergedTotals | None = None
    gguf_lora: object | None = None  # export.gguf_lora.GgufLoraCheck
    modelfile: object | None = None  # export.modelfile.ModelfileCheck


def source_kind(path: Path) -> Literal["folder", "gguf"]:
    """A model folder or a GGUF file (which of merged/LoRA is decided from its metadata)."""
    if not path.exists():
        raise FtdiagError(f"export not found: {path}")
    if path.is_dir():
        return "folder"
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        if path.suffix == ".safetensors":
            raise FtdiagError(f"{path} is a single safetensors file",
                              hint="pass the merged model's folder")
        raise FtdiagError(f"{path} is neither a model folder nor a GGUF file")
    return "gguf"


def resolve_base(adapter: LoraAdapter, base: str | None, revision: str | None = None) -> Path:
    """The base model folder: --base, else the adapter's base_model_name_or_path.

    Either may be a Hub id (cache first, a download only where the environment allows it).
    """
    from ftdiag.adapters.preflight import resolve_base as resolve

    return resolve(adapter.path, base, revision)


def compare_merged(adapter: LoraAdapter, base: WeightSource,
                   export: WeightSource) -> list[ModuleCheck]:
    """One ModuleCheck per adapted module, reading one base and one export tensor at a time.

    Modules run on a few threads: numpy releases the GIL in the array passes.
    """

    def one(name: str) -> ModuleCheck:
        wb = base.read(name)
        if wb is None:
            raise FtdiagError(f"the base {base.path} has no weight for {name}",
                              hint="pass the --base the adapter was trained on")
        we = export.read(name)
        if we is None:
            return missing(name, "export")
        return compare_module(adapter.updates[name], wb, we, dora=adapter.dora)

    from threadpoolctl import threadpool_limits

    workers = max(1, min(THREADS, os.cpu_count() or 1))
    # many small products per module: BLAS threads would only contend with the workers
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        checks = list(pool.map(one, adapter.updates))
    if all(c.verdict == "missing" for c in checks):
        raise FtdiagError(f"{export.path} holds none of the adapter's {len(checks)} modules "
                          f"(e.g. {checks[0].module})",
                          hint="is it an export of another architecture, or a LoRA file?")
    return checks


def check_export(path: Path | str, adapter_dir: Path | str, base: str | None = None,
                 modelfile: Path | str | None = None, revision: str | None = None,
                 adapter_revision: str | None = None, runtime: str | None = None) -> Report:
    """Compare an export with the adapter (and base); X001-X008 (and T with runtime).

    The adapter and base may be Hub ids (`adapter_revision`, `revision`).
    """
    from ftdiag.model.load import resolve_adapter_dir

    path = Path(path).expanduser()
    kind = source_kind(path)
    adapter = read_lora(resolve_adapter_dir(adapter_dir, adapter_revision))
    report = Report("check-export", layers_run=["X"])
    details = ExportDetails(str(path), "merged-safetensors", str(adapter.path))
    report.details = details
    reader = open_gguf(path) if kind == "gguf" else None
    if reader is not None and is_lora_gguf(reader):
        from ftdiag.export.gguf_lora import check_gguf_lora

        details.kind = "lora-gguf"
        base_dir = _optional_base(adapter, base, revision)
        details.base = str(base_dir) if base_dir else None
        check, found = check_gguf_lora(path, reader, adapter, base_dir)
        details.gguf_lora = check
        report.add(*(Finding(c, "skip", "skipped: applies to merged exports")
                     for c in ("X001", "X002", "X003", "X006", "X007", "X008")), *found)
    else:
        base_dir = resolve_base(adapter, base, revision)
        details.base = str(base_dir)
        report.add(Finding("X004", "skip", "skipped: not a LoRA GGUF"))
        export: WeightSource
        if reader is not None:
            details.kind = "merged-gguf"
            export = GgufModel(path, reader)
        else:
            export = SafetensorsFolder(path)
        details.modules = compare_merged(adapter, SafetensorsFolder(base_dir), export)
        details.totals = totals(details.modules)
        report.add(*merged_findings(details.modules, dora=adapter.dora))
        report.add(*_export_files(path, export, adapter, base_dir, reader))
    if modelfile is not None:
        from ftdiag.export.modelfile import check_modelfile

        details.modelfile, found_mf = check_modelfile(Path(modelfile), path, details.kind,
                                                      adapter.path, base_dir)
        report.add(found_mf)
    else:
        report.add(Finding("X005", "skip", "skipped: no --modelfile given"))
    if runtime is not None:
        report.add(*_target(runtime, adapter, base_dir))
        report.layers_run.append("T")
    report.checks.sort(key=lambda c: c.code)
    return report


def _target(runtime: str, adapter: LoraAdapter, base_dir: Path | None) -> list[Finding]:
    """Layer T on the adapter the export was made from (what the runtime does with it)."""
    from ftdiag.adapters.files import read_adapter
    from ftdiag.adapters.keys import group_lora_keys
    from ftdiag.adapters.stats import compute_stats
    from ftdiag.adapters.target import target_checks

    files = read_adapter(adapter.path)
    modules, _other = group_lora_keys(list(files.shapes))
    stats, _nonfinite = compute_stats(files, modules, files.config or {})
    return target_checks(runtime, files, stats, base_dir)


def _export_files(path: Path, export: WeightSource, adapter: LoraAdapter, base_dir: Path,
                  reader: object | None) -> list[Finding]:
    """X006-X008 on what sits beside the merged weights (a GGUF carries its own metadata)."""
    from ftdiag.export import config

    turn_end = config.turn_end_token(adapter.path, base_dir)
    if reader is not None:
        from ftdiag.export.weights import gguf_fields

        why = "skipped: applies to merged folders (a GGUF carries its own metadata)"
        return [Finding("X006", "skip", why), Finding("X007", "skip", why),
                config.eos_check(config.gguf_eos(gguf_fields(reader)), turn_end, "GGUF")]
    assert isinstance(export, SafetensorsFolder)
    return [config.adapter_files_check(path), config.config_check(path, export, base_dir),
            config.eos_check(config.folder_eos(path), turn_end, "export's generation config")]


def is_lora_gguf(reader: object) -> bool:
    """A GGUF that says it is an adapter, or holds .lora_a/.lora_b tensors."""
    from ftdiag.export.weights import gguf_fields

    fields = gguf_fields(reader)
    if str(fields.get("general.type", "")) == "adapter":
        return True
    return any(t.name.endswith((".lora_a", ".lora_b")) for t in reader.tensors)  # type: ignore[attr-defined]


def _optional_base(adapter: LoraAdapter, base: str | None,
                   revision: str | None = None) -> Path | None:
    """The base folder when it can be found (a LoRA GGUF is checked without it too)."""
    try:
        return resolve_base(adapter, base, revision)
    except FtdiagError:
        if base is not None:
            raise
        return None
