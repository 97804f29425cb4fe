"""ab-test and doctor under torchrun: 2 CPU processes (gloo) = the 1-process JSON, printed once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from _ab_helpers import write_titles
from _torchrun import HAS_LAUNCHER, Launch, launch

from ftdiag.distributed import gather, split, world

AB_CODE = 0  # healthy adapter: pass or warn
DOCTOR_CODE = 0
needs_launcher = pytest.mark.skipif(
    not HAS_LAUNCHER, reason="torchrun / ftdiag scripts not installed in this environment")


def _doc(run: Launch, code: int) -> dict[str, Any]:
    """The one JSON document rank 0 printed; every rank exited with `code`, others printed none."""
    run.assert_exit(code)
    assert all(r.stdout == "" for r in run.ranks[1:]), [r.stdout[:200] for r in run.ranks]
    doc = json.loads(run.stdout)  # one document: a second rank printing would break this
    assert code == (1 if doc["verdict"] == "fail" else 0)
    return doc


def _rounded(x: Any) -> Any:
    """Floats to 5 places: shards batch differently, so NLLs may move in the last bits."""
    if isinstance(x, float):
        return round(x, 5)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x


@needs_launcher
def test_ab_test_two_processes_equal_one(tmp_path: Path, tiny_llama: Path,
                                         trained_adapter: Path) -> None:
    titles = tmp_path / "t.jsonl"
    write_titles(tmp_path / "four.jsonl")
    lines = (tmp_path / "four.jsonl").read_text().splitlines()
    titles.write_text("\n".join(lines + lines[:1]) + "\n")  # 5 titles: uneven shards
    args = ["ab-test", "--adapter", str(trained_adapter), "--base", str(tiny_llama),
            "--titles", str(titles), "--max-new-tokens", "8", "--json"]
    one = _doc(launch([*args, "--markdown", str(tmp_path / "one.md")], tmp_path, 1), AB_CODE)
    two = _doc(launch([*args, "--markdown", str(tmp_path / "two.md")], tmp_path, 2), AB_CODE)
    assert len(two["details"]["rows"]) == 5 and "ref_nll" in two["details"]["summary"]
    for doc in (one, two):  # measured run to run: where the time went, the dtype probe's ms
        doc["details"].pop("timing")
        doc["details"]["summary"]["dtype"].pop("probe_ms", None)
    assert _rounded(two) == _rounded(one)
    assert (tmp_path / "two.md").read_text() == (tmp_path / "one.md").read_text()
    assert sorted(p.name for p in tmp_path.glob("*.md")) == ["one.md", "two.md"]  # no temp left


@needs_launcher
def test_doctor_two_processes_equal_one(tmp_path: Path, tiny_llama: Path,
                                        trained_adapter: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_adapter, run)
    (run / "ftdiag_meta.json").write_text(json.dumps({"base": str(tiny_llama)}))
    write_titles(run / "train_examples.jsonl")
    args = ["doctor", str(run), "--max-new-tokens", "8", "--json"]
    one = _doc(launch(args, tmp_path, 1), DOCTOR_CODE)
    two = _doc(launch(args, tmp_path, 2), DOCTOR_CODE)
    assert two["details"]["ab"]["summary"]["n"] == 4
    assert _rounded(two) == _rounded(one)


def test_split_covers_every_item_once_in_rank_order() -> None:
    items = list(range(7))
    parts = [split(items, r, 3) for r in range(3)]
    assert parts == [[0, 1, 2], [3, 4], [5, 6]]
    assert split([1], 1, 2) == [] and split([], 0, 2) == []


def test_one_process_is_rank_zero_and_gathers_its_own_part() -> None:
    assert world() == (0, 1)
    assert gather([3, 1]) == [3, 1]
