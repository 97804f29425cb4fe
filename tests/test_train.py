"""ftdiag.training.recipe on the tiny Llama: it learns, writes every output, protects --out,
resumes."""

from __future__ import annotations

import errno
import json
import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from _train_helpers import toy_records, write_jsonl
from transformers import Trainer, TrainerCallback

from ftdiag.adapters.fingerprint import weights_fingerprint
from ftdiag.errors import FtdiagError
from ftdiag.training.callbacks import FtdiagCheckError, TrainingInterrupted
from ftdiag.training.recipe import FINAL_TMP, TrainConfig, TrainResult, train


def _cfg(data: Path, out: Path, base: Path, **kw: Any) -> TrainConfig:
    opts: dict[str, Any] = dict(data=data, out=out, base=str(base), lr=3e-2, lora_r=8,
                                lora_alpha=16, lora_dropout=0.0, batch_size=8, max_steps=16,
                                eval_steps=8, logging_steps=1, max_length=96, eval_share=0.2)
    opts.update(kw)
    return TrainConfig(**opts)


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "trn.json", toy_records(48))


@pytest.fixture(scope="module")
def run(toy_data: Path, tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> TrainResult:
    # the random tiny model's logits are tiny (lm_head init std 0.02, RMS-normed input):
    # adapting lm_head as well lets 16 steps show a real drop
    targets = ["q_proj", "v_proj", "down_proj", "lm_head"]
    return train(_cfg(toy_data, tmp_path_factory.mktemp("runs") / "run", tiny_llama,
                      target_modules=targets))


def test_loss_decreases_on_the_tiny_llama(run: TrainResult) -> None:
    assert run.steps == 16
    assert run.last_loss < 0.6 * run.first_loss
    assert run.best_eval_loss is not None and run.best_eval_loss < run.first_loss
    assert run.tokens > 0 and run.tokens_per_s > 0
    assert run.grad_check["nonzero"] > 0


def test_every_output_file_is_written(run: TrainResult) -> None:
    out = run.out_dir
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
                 "trainer_state.json", "ftdiag_meta.json", "train_examples.jsonl",
                 "eval_examples.jsonl"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-16", "checkpoint-8"]
    assert not (out / FINAL_TMP).exists()
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    keys = set().union(*history)
    assert {"loss", "eval_loss", "grad_norm", "learning_rate", "epoch"} <= keys


def test_meta_records_what_other_commands_need(run: TrainResult, tiny_llama: Path) -> None:
    meta = json.loads((run.out_dir / "ftdiag_meta.json").read_text())
    assert meta["base"] == str(tiny_llama)
    assert meta["base_config_hash"] and meta["template"].count("{title}") == 1
    assert meta["base_fingerprint"] == weights_fingerprint(tiny_llama) is not None
    assert meta["tokenizer"]["pad_token_id"] != meta["tokenizer"]["eos_token_id"]
    assert meta["data"]["sha256"] and meta["data"]["title_field"] == "title"
    assert meta["hyperparameters"]["lora_r"] == 8
    assert "lm_head" in meta["hyperparameters"]["target_modules"]
    assert meta["versions"]["peft"] and meta["result"]["steps"] == 16
    train_titles = {json.loads(x)["title"] for x in
                    (run.out_dir / "train_examples.jsonl").read_text().splitlines()}
    eval_titles = {json.loads(x)["title"] for x in
                   (run.out_dir / "eval_examples.jsonl").read_text().splitlines()}
    assert len(train_titles) == run.data.train_size and not train_titles & eval_titles


def test_static_check_passes_on_the_trained_adapter(run: TrainResult) -> None:
    assert run.static is not None and run.static.verdict == "pass"
    assert "A003" in {c.code for c in run.report.checks}


def test_no_lora_gradient_fails_fast(toy_data: Path, tiny_llama: Path, tmp_path: Path) -> None:
    # dropout 1.0 zeroes every LoRA input: no gradient can reach A or B
    with pytest.raises(FtdiagCheckError, match="non-zero gradient"):
        train(_cfg(toy_data, tmp_path / "run", tiny_llama, lora_dropout=1.0, max_steps=3))
    assert not (tmp_path / "run" / "adapter_config.json").exists()


def test_out_protection_force_and_resume(toy_data: Path, tiny_llama: Path,
                                         tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = train(_cfg(toy_data, out, tiny_llama, max_steps=4, eval_steps=2))
    with pytest.raises(FtdiagError, match="not empty"):
        train(_cfg(toy_data, out, tiny_llama, max_steps=4))
    resumed = train(_cfg(toy_data, out, tiny_llama, max_steps=6, eval_steps=2, resume=True))
    assert resumed.resumed_from and resumed.resumed_from.endswith("checkpoint-4")
    assert resumed.steps == 6 and first.steps == 4
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history if "loss" in h] == [1, 2, 3, 4, 5, 6]
    forced = train(_cfg(toy_data, out, tiny_llama, max_steps=2, eval_steps=2, force=True))
    assert forced.steps == 2
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]


def test_resume_without_checkpoint_is_an_error(toy_data: Path, tiny_llama: Path,
                                               tmp_path: Path) -> None:
    with pytest.raises(FtdiagError, match="no checkpoint"):
        train(_cfg(toy_data, tmp_path / "empty", tiny_llama, resume=True))


class _CtrlC(TrainerCallback):
    """Deliver SIGINT to ourselves during step 2, as a user pressing Ctrl-C would."""

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step == 1:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_saves_a_resumable_checkpoint(toy_data: Path, tiny_llama: Path,
                                             tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as stop:
        train(_cfg(toy_data, out, tiny_llama, max_steps=10, eval_steps=10),
              callbacks=[_CtrlC()])
    assert stop.value.checkpoint and stop.value.checkpoint.endswith("checkpoint-2")
    assert not (out / "adapter_config.json").exists()
    resumed = train(_cfg(toy_data, out, tiny_llama, max_steps=3, eval_steps=10, resume=True))
    assert resumed.steps == 3 and (out / "adapter_config.json").is_file()


def test_disk_full_on_final_save_keeps_previous_adapter(
        toy_data: Path, tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    train(_cfg(toy_data, out, tiny_llama, max_steps=2, eval_steps=2))
    before = (out / "adapter_model.safetensors").read_bytes()
    real_save = Trainer.save_model

    def full_disk(self: Trainer, output_dir: str | None = None, **kw: Any) -> None:
        if output_dir and output_dir.endswith(FINAL_TMP):
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / "adapter_model.safetensors").write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(self, output_dir, **kw)

    monkeypatch.setattr(Trainer, "save_model", full_disk)
    with pytest.raises(FtdiagError, match="No space left"):
        train(_cfg(toy_data, out, tiny_llama, max_steps=2, eval_steps=2, force=True))
    assert (out / "adapter_model.safetensors").read_bytes() == before
    assert not (out / FINAL_TMP).exists()


def test_gradient_checkpointing_still_trains_lora(toy_data: Path, tiny_llama: Path,
                                                  tmp_path: Path) -> None:
    cfg = _cfg(toy_data, tmp_path / "run", tiny_llama, max_steps=2, eval_steps=2)
    result = train(replace(cfg, gradient_checkpointing=True))
    assert result.grad_check["nonzero"] == result.grad_check["lora_tensors"] // 2  # every B
    assert result.static is not None and result.static.verdict == "pass"
