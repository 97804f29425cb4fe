"""ab-test and doctor under torchrun: 2 CPU processes (gloo) = the 1-process JSON, printed once."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _ab_helpers import write_titles

from ftdiag.distributed import gather, split, world

BIN = Path(sys.executable).parent
needs_launcher = pytest.mark.skipif(
    not (BIN / "torchrun").is_file() or not (BIN / "ftdiag").is_file(),
    reason="torchrun / ftdiag scripts not installed in this environment")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(args: list[str], tmp_path: Path, procs: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FTDIAG_CACHE": str(tmp_path / "cache")}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    launcher = ([str(BIN / "torchrun"), "--nproc_per_node", str(procs), "--master_port",
                 str(_free_port())] if procs > 1 else [])
    return subprocess.run([*launcher, str(BIN / "ftdiag"), *args], env=env, capture_output=True,
                          text=True, timeout=240)


def _doc(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    return json.loads(proc.stdout)  # one document: a second rank printing would break this


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
    one = _doc(_run([*args, "--markdown", str(tmp_path / "one.md")], tmp_path, 1))
    two = _doc(_run([*args, "--markdown", str(tmp_path / "two.md")], tmp_path, 2))
    assert len(two["details"]["rows"]) == 5 and "ref_nll" in two["details"]["summary"]
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
    one = _doc(_run(args, tmp_path, 1))
    two = _doc(_run(args, tmp_path, 2))
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
