"""A012: the adapter given is an earlier checkpoint-N of a run that went further.
A015: every adapter the run saved holds the same tensors: training changed nothing.
"""

from __future__ import annotations

import hashlib
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


def unchanged_adapter(adapter_dir: Path) -> Finding:
    """A015 when the run's checkpoint-N adapters and its final adapter are bit-identical.

    Each file is streamed once through a hash per tensor (a memory map, never a second copy).
    """
    run = adapter_dir.parent if CHECKPOINT.match(adapter_dir.name) else adapter_dir
    steps = sorted((int(c.group(1)), p) for p in (run.iterdir() if run.is_dir() else [])
                   if (c := CHECKPOINT.match(p.name)) and (p / WEIGHTS).is_file())
    saved = [p for _, p in steps]
    final_step = _state(run).get("global_step")
    if (run / WEIGHTS).is_file() and (not steps or (isinstance(final_step, int)
                                                    and final_step > steps[-1][0])):
        saved.append(run)  # the final adapter is a later step than every checkpoint
    if len(saved) < 2:
        return Finding("A015", "skip", "fewer than two adapters of different steps in the run: "
                       "nothing to compare")
    digests = {p: _tensor_digests(p / WEIGHTS) for p in saved}
    first = digests[saved[0]]
    same = [p for p in saved[1:] if digests[p] == first]
    evidence: dict[str, Any] = {"run": str(run), "adapters": [p.name or str(p) for p in saved],
                "tensors": len(first), "identical": len(same) + 1}
    if len(same) + 1 < len(saved):
        return passed("A015", f"the run's {len(saved)} saved adapters differ: training changed "
                      "the weights", **evidence)
    if not _any_nonzero_b(saved[0] / WEIGHTS):
        return Finding("A015", "skip", "every lora_B is zero (A003 says so)")
    names = ", ".join(p.name for p in saved[:4])
    return finding("A015", f"all {len(saved)} adapters the run saved ({names}) hold "
                   f"bit-identical tensors ({len(first)} of them): training updated nothing",
                   hint="the LoRA weights were frozen (requires_grad False after "
                        "prepare_model_for_kbit_training or a passed-in adapter: use "
                        "is_trainable=True), or lr was 0", **evidence)


WEIGHTS = "adapter_model.safetensors"


def _tensor_digests(path: Path) -> dict[str, str]:
    from ftdiag.adapters.tensorfile import open_safetensors

    tf = open_safetensors(path)
    out = {}
    for name in sorted(tf.tensors):
        out[name] = hashlib.blake2b(tf.raw(name).data, digest_size=16).hexdigest()
        tf.release(name)
    return out


def _any_nonzero_b(path: Path) -> bool:
    from ftdiag.adapters.tensorfile import open_safetensors

    tf = open_safetensors(path)
    return any(bool((tf.raw(n) != 0).any()) for n in tf.tensors if "lora_B" in n)


def _state(folder: Path) -> dict[str, Any]:
    """trainer_state.json of a folder ({} when absent, unreadable or absurd: it is context)."""
    from ftdiag.errors import FtdiagError
    from ftdiag.safeio import MAX_LOG_BYTES, read_json

    path = folder / "trainer_state.json"
    if not path.is_file():
        return {}
    try:
        data = read_json(path, MAX_LOG_BYTES)
    except FtdiagError:
        return {}
    return data if isinstance(data, dict) else {}
