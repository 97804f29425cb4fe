"""Every log format a user has lands in one LossLog: Trainer runs, TensorBoard, CSV, JSONL."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from _loss_helpers import healthy, history, train_tiny, write_state

from ftdiag.errors import FtdiagError
from ftdiag.loss.analysis import loss_report
from ftdiag.loss.read import read_loss_log


@pytest.fixture(scope="module")
def trainer_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Trainer run on the tiny Llama (40 steps, checkpoints at 20 and 40, no reporting)."""
    return train_tiny(tmp_path_factory.mktemp("run") / "out", report_to=[])


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run reported to TensorBoard: a real event file under out/runs/."""
    return train_tiny(tmp_path_factory.mktemp("tb") / "out", report_to=["tensorboard"])


def test_real_trainer_run_dir_reads_the_newest_checkpoint(trainer_run: Path) -> None:
    assert not (trainer_run / "trainer_state.json").exists()
    log = read_loss_log(trainer_run)
    assert Path(log.source) == trainer_run / "checkpoint-40" / "trainer_state.json"
    assert log.format == "trainer_state" and len(log.train) == 40 and len(log.eval) == 4
    assert log.global_step == log.max_steps == 40 and log.epoch[-1][1] == pytest.approx(2.5)
    assert [s for s, _ in log.learning_rate] == list(range(1, 41))


def test_real_trainer_run_converges_but_has_few_steps(trainer_run: Path) -> None:
    rep = loss_report([trainer_run])
    assert rep.codes() == {"L006"}  # 40 < 50 steps; the loss did fall, eval was logged
    d = rep.details
    assert d.end_loss < d.start_loss and d.relative_decrease > 0.05
    assert d.lr_schedule["kind"] == "warmup + cosine" and d.completed is True
    assert loss_report([trainer_run], min_steps=40).verdict == "pass"


def test_tensorboard_event_dir_matches_trainer_state(tensorboard_run: Path) -> None:
    state = read_loss_log(tensorboard_run / "checkpoint-40" / "trainer_state.json")
    tb = read_loss_log(tensorboard_run / "runs")
    assert tb.format == "tensorboard"
    assert [s for s, _ in tb.train] == [s for s, _ in state.train]
    assert [v for _, v in tb.train] == pytest.approx([v for _, v in state.train], rel=1e-6)
    assert [s for s, _ in tb.eval] == [10, 20, 30, 40]
    assert tb.learning_rate and tb.grad_norm


def test_tensorboard_single_event_file(tensorboard_run: Path) -> None:
    (event,) = (tensorboard_run / "runs").rglob("events.out.tfevents*")
    log = read_loss_log(event)
    assert len(log.train) == 40 and log.source == str(event)


def test_tensorboard_missing_names_the_install(tensorboard_run: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard.backend.event_processing", None)
    with pytest.raises(FtdiagError) as exc:
        read_loss_log(tensorboard_run / "runs")
    assert "pip install tensorboard" in exc.value.hint


def test_checkpoint_discovery_is_by_step_number(tmp_path: Path) -> None:
    write_state(tmp_path / "checkpoint-9", history(healthy(9)))
    write_state(tmp_path / "checkpoint-10", history(healthy(10)))
    log = read_loss_log(tmp_path)
    assert Path(log.source).parent.name == "checkpoint-10" and len(log.train) == 10


def test_top_level_trainer_state_wins_over_checkpoints(tmp_path: Path) -> None:
    write_state(tmp_path / "checkpoint-10", history(healthy(10)))
    write_state(tmp_path, history(healthy(12)))
    assert len(read_loss_log(tmp_path).train) == 12


def test_csv_with_separate_eval_rows_and_nan(tmp_path: Path) -> None:
    path = tmp_path / "wandb.csv"
    path.write_text("step,loss,eval_loss,lr\n1,2.0,,1e-4\n2,nan,,1e-4\n3,1.5,,1e-4\n"
                    "3,,1.7,\n4,1.2,,1e-4\n")
    log = read_loss_log(path)
    assert log.format == "csv" and [s for s, _ in log.train] == [1, 2, 3, 4]
    assert math.isnan(log.train[1][1]) and log.eval == [(3, 1.7)]
    assert "L004" in loss_report([path]).codes()


def test_csv_custom_columns(tmp_path: Path) -> None:
    path = tmp_path / "lightning.csv"
    path.write_text("global_step,train/loss,val/loss\n0,3.0,\n1,2.0,\n1,,2.5\n")
    log = read_loss_log(path, step_col="global_step", loss_col="train/loss",
                        eval_col="val/loss")
    assert log.train == [(0, 3.0), (1, 2.0)] and log.eval == [(1, 2.5)]


def test_csv_without_loss_column_lists_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("step,train_loss_avg,acc\n1,2.0,0.5\n")
    with pytest.raises(FtdiagError) as exc:
        read_loss_log(path)
    assert "step, train_loss_avg, acc" in exc.value.message and "--loss-col" in exc.value.hint


def test_csv_duplicate_steps_keep_the_latest(tmp_path: Path) -> None:
    path = tmp_path / "resumed.csv"
    path.write_text("step,loss\n1,3.0\n2,2.9\n3,2.8\n2,2.0\n3,1.9\n4,1.8\n")
    log = read_loss_log(path)
    assert log.train == [(1, 3.0), (2, 2.0), (3, 1.9), (4, 1.8)] and log.duplicates_merged == 2


def test_jsonl_with_tokens_seen(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    rows = [{"step": s, "loss": 3.0 - s / 10, "num_input_tokens_seen": s * 512}
            for s in range(3, 0, -1)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    log = read_loss_log(path)
    assert log.train[0] == (1, pytest.approx(2.9)) and log.was_unsorted
    assert log.tokens_seen == 1536


def test_truncated_jsonl_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    with pytest.raises(FtdiagError, match=r"log\.jsonl:2"):
        read_loss_log(path)


def test_truncated_trainer_state_is_a_user_error(tmp_path: Path) -> None:
    path = write_state(tmp_path, history(healthy(20)))
    path.write_text(path.read_text()[:-40])
    with pytest.raises(FtdiagError, match="invalid JSON"):
        read_loss_log(path)


def test_missing_path_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(FtdiagError, match="no such file"):
        read_loss_log(tmp_path / "nope")


def test_run_dir_with_one_csv_is_found(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text("step,loss\n1,2.0\n2,1.0\n")
    assert read_loss_log(tmp_path).format == "csv"


def test_run_dir_with_several_csvs_asks_to_name_one(tmp_path: Path) -> None:
    for name in ("a.csv", "b.csv"):
        (tmp_path / name).write_text("step,loss\n1,2.0\n")
    log = read_loss_log(tmp_path)
    assert not log.train and "a.csv, b.csv" in log.notes[0]


def test_tensorboard_resumed_run_keeps_the_latest_write(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    attempts = [(0.0, range(1, 11), 1000), (-1.0, range(6, 16), 2000)]  # resumed from step 5
    for run, (offset, steps, t0) in enumerate(attempts):
        with SummaryWriter(str(tmp_path / "runs" / f"attempt{run}")) as w:
            for i, s in enumerate(steps):
                w.add_scalar("train/my_loss", 5.0 - s / 10 + offset, s, walltime=t0 + i)
    log = read_loss_log(tmp_path, loss_col="my_loss")
    assert log.format == "tensorboard" and [s for s, _ in log.train] == list(range(1, 16))
    assert dict(log.train)[5] == pytest.approx(4.5) and dict(log.train)[6] == pytest.approx(3.4)
    assert log.duplicates_merged == 5 and "merged 2 event files" in log.notes[0]


def test_bare_log_history_list_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    path.write_text(json.dumps(history(healthy(20))))
    assert len(read_loss_log(path).train) == 20


def test_run_dir_data_files_are_not_taken_for_logs(tmp_path: Path) -> None:
    (tmp_path / "train_examples.jsonl").write_text('{"title": "x", "content": "y"}\n')
    (tmp_path / "metrics.csv").write_text("step,loss\n1,2.0\n2,1.0\n")
    log = read_loss_log(tmp_path)
    assert log.format == "csv" and Path(log.source).name == "metrics.csv"
    (tmp_path / "metrics.csv").unlink()
    assert read_loss_log(tmp_path).train == []  # L001, not a format error
