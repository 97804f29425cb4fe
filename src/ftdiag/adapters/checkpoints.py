"""A012: the adapter given is an earlier checkpoint-N of a run that went further."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ftdiag.findings import Finding, finding, passed

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def stale_checkpoint(adapter_dir: Path) -> Finding:
    """A012 (warn) when sibling checkpoints go further or the run folder holds a final adapter."""
    m = CHECKPOINT.match(adapter_dir.name)
    if not m:
        return passed("A012", "not a checkpoint-N folder of a training run")
    run = adapter_dir.parent
    step = int(_state(adapter_dir).get("global_step") or m.group(1))
    later = sorted((int(c.group(1)), p) for p in run.iterdir()
                   if (c := CHECKPOINT.match(p.name)) and int(c.group(1)) > step
                   and (p / "adapter_config.json").is_file())
    final = (run / "adapter_config.json").is_file()
    run_step = _state(run).get("global_step")
    best = _state(later[-1][1] if later else run).get("best_model_checkpoint")
    if best and Path(best).name == adapter_dir.name:
        return passed("A012", f"{adapter_dir.name} is the best checkpoint of {run} "
                              "(best_model_checkpoint)")
    if not later and not final:
        return passed("A012", f"{adapter_dir.name} is the latest checkpoint in {run}")
    last = max([s for s, _ in later] + ([int(run_step)] if final and run_step else []),
               default=None)
    newer = ([f"{run} (final adapter)"] if final else []) + [str(p) for _, p in later[::-1]]
    return finding("A012", f"{adapter_dir.name} is step {step} of a run that went on"
                           + (f" to step {last}" if last else "") + f": newer adapters in "
                           f"{', '.join(newer[:3])}",
                   hint=f"check or serve {newer[0]} unless you chose this checkpoint on purpose",
                   step=step, last_step=last, newer=newer[:10], final_adapter=final)


def _state(folder: Path) -> dict[str, Any]:
    """trainer_state.json of a folder ({} when absent or unreadable)."""
    try:
        data = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
