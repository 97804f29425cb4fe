"""Adapters in one folder: PEFT saves a non-default adapter in a subfolder named after it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ftdiag.adapters.checkpoints import CHECKPOINT
from ftdiag.adapters.details import AdapterVerdict, CheckDetails, details_of
from ftdiag.adapters.files import CONFIG_FILE
from ftdiag.findings import Report


@dataclass
class AdapterSection:
    """One adapter found in the folder and its check-adapter report."""

    name: str
    path: Path
    report: Report


@dataclass
class FolderCheck:
    """Every adapter's section, and one report over all of them (verdict, exit code, --json)."""

    sections: list[AdapterSection]
    report: Report


def find_adapters(folder: str | Path) -> list[tuple[str, Path]]:
    """('default', folder) when it holds an adapter, then each named adapter subfolder.

    checkpoint-N folders are a training run's history, not named adapters (see A012).
    """
    path = Path(folder).expanduser()
    found = [("default", path)] if (path / CONFIG_FILE).is_file() else []
    if path.is_dir():
        found += [(p.name, p) for p in sorted(path.iterdir())
                  if p.is_dir() and (p / CONFIG_FILE).is_file() and not CHECKPOINT.match(p.name)]
    return found


def other_adapters_note(folder: str | Path) -> str | None:
    """One line when `folder` holds more adapters than the 'default' one a command loads."""
    found = find_adapters(folder)
    if len(found) < 2 or found[0][0] != "default":
        return None
    names = ", ".join(repr(n) for n, _ in found)
    return (f"{folder} holds {len(found)} adapters ({names}): this run uses 'default' (the files "
            f"at the top); pass a subfolder for another, e.g. --adapter {found[1][1]}")


def check_folder(folder: str | Path, base: str | Path | None = None,
                 probes: list[str] | None = None, static_only: bool = False,
                 adapter_revision: str | None = None, **kw: Any) -> FolderCheck:
    """check-adapter on every adapter in `folder` (one section each); a Hub id is fetched first."""
    from ftdiag.adapters.check import check_adapter
    from ftdiag.model.load import resolve_adapter_dir

    folder = resolve_adapter_dir(folder, adapter_revision)
    found = find_adapters(folder) or [("default", Path(folder))]
    sections = [AdapterSection(name, path, check_adapter(path, base, probes, static_only, **kw))
                for name, path in found]
    if len(sections) == 1:
        return FolderCheck(sections, sections[0].report)
    return FolderCheck(sections, combined_report(sections))


def combined_report(sections: list[AdapterSection]) -> Report:
    """All sections' checks, each message tagged with its adapter's name."""
    report = Report("check-adapter")
    for s in sections:
        report.add(*(replace(c, message=f"[{s.name}] {c.message}") for c in s.report.checks))
        report.layers_run += [x for x in s.report.layers_run if x not in report.layers_run]
    for layer in sorted({k for s in sections for k in s.report.layers_skipped}):
        why = {s.name: s.report.layers_skipped[layer] for s in sections
               if layer in s.report.layers_skipped}
        report.layers_skipped[layer] = (next(iter(why.values())) if len(set(why.values())) == 1
                                        and len(why) == len(sections) else
                                        "; ".join(f"[{n}] {w}" for n, w in why.items()))
    report.details = CheckDetails(
        adapters=[AdapterVerdict(s.name, str(s.path), s.report.verdict) for s in sections],
        sections={s.name: details_of(s.report) for s in sections})
    return report
