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
DOCTOR_CODE = 1  # the run folder holds no loss log: L001 fails (the rest is healthy)
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


def _drop_measured(doc: Any) -> Any:
    """What differs run to run, anywhere in a document: where the time went (`timing`) and the
    dtype probe's times (a `dtype` record keeps only its verdict)."""
    if isinstance(doc, dict):
        for key in [k for k in doc if k == "timing"]:
            del doc[key]
        for key, value in doc.items():
            if key == "dtype" and isinstance(value, dict):
                doc[key] = value.get("dtype")
            else:
                _drop_measured(value)
    elif isinstance(doc, list):
        for value in doc:
            _drop_measured(value)
    return doc


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
    for doc in (one, two):
        _drop_measured(doc)
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
    assert [f["code"] for f in one["findings"] if f["severity"] == "fail"] == ["L001"]  # exit 1
    assert _rounded(_drop_measured(two)) == _rounded(_drop_measured(one))


def test_split_covers_every_item_once_in_rank_order() -> None:
    items = list(range(7))
    parts = [split(items, r, 3) for r in range(3)]
    assert parts == [[0, 1, 2], [3, 4], [5, 6]]
    assert split([1], 1, 2) == [] and split([], 0, 2) == []


def test_one_process_is_rank_zero_and_gathers_its_own_part() -> None:
    assert world() == (0, 1)
    assert gather([3, 1]) == [3, 1]
