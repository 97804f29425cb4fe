"""`ftdiag train` under torchrun: 2 CPU processes (gloo), one adapter, losses logged once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _torchrun import HAS_LAUNCHER, launch
from _train_helpers import toy_records, write_jsonl

TRAIN_CODE = 0


@pytest.mark.skipif(not HAS_LAUNCHER,
                    reason="torchrun / ftdiag scripts not installed in this environment")
def test_two_process_cpu_run(tmp_path: Path, tiny_llama: Path) -> None:
    data = write_jsonl(tmp_path / "trn.json", toy_records(48))
    out = tmp_path / "run"
    run = launch(["train", "--data", str(data), "--base", str(tiny_llama), "--out", str(out),
                  "--max-steps", "4", "--eval-steps", "2", "--logging-steps", "1",
                  "--max-length", "96", "--lr", "1e-2"], tmp_path, 2, timeout=90)
    run.assert_exit(TRAIN_CODE)
    assert run.ranks[0].stdout.count("training summary") == 1  # rank 0 alone prints
    assert "training summary" not in run.ranks[1].stdout
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not list(out.glob(".*tmp*"))
    meta = json.loads((out / "ftdiag_meta.json").read_text())
    assert meta["hyperparameters"]["world_size"] == 2
    assert meta["result"]["steps"] == 4 and meta["result"]["static_verdict"] == "pass"
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history if "loss" in h] == [1, 2, 3, 4]
    n_train = len((out / "train_examples.jsonl").read_text().splitlines())
    assert n_train == meta["data"]["summary"]["train_size"]
