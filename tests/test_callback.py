"""FtdiagCallback inside real TRL SFTTrainer and transformers Trainer runs on a tiny Llama."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _train_helpers import toy_records
from typer.testing import CliRunner

from ftdiag import FtdiagCallback, FtdiagCheckError
from ftdiag.cli.app import app
from ftdiag.findings import Finding

TARGETS = ["q_proj", "v_proj"]
TEMPLATE = "Title: {title}\nDescription: "


def _lora_model(base: Path) -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base))
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS,
                                            lora_dropout=0.0, task_type="CAUSAL_LM"))


def _sft(base: Path, out: Path, callback: FtdiagCallback, model: Any = None,
         steps: int = 4, **config: Any) -> Any:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    rows = [{"prompt": TEMPLATE.format(title=r["title"]), "completion": r["content"]}
            for r in toy_records(32)]
    args = SFTConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=4,
                     learning_rate=5e-3, logging_steps=1, use_cpu=True, report_to="none",
                     disable_tqdm=True, max_length=64, seed=0, **{"save_steps": 2, **config})
    return SFTTrainer(model=model or _lora_model(base), args=args,
                      train_dataset=Dataset.from_list(rows),
                      processing_class=AutoTokenizer.from_pretrained(str(base)),
                      callbacks=[callback])


def _plain(base: Path, out: Path, callback: FtdiagCallback, *, pad_is_eos: bool,
           model: Any = None) -> Any:
    from transformers import (
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    tok = AutoTokenizer.from_pretrained(str(base))
    if pad_is_eos:
        tok.pad_token = tok.eos_token  # the common recipe that masks every EOS label
    texts = [TEMPLATE.format(title=r["title"]) + r["content"] + tok.eos_token
             for r in toy_records(16)]
    features = [{"input_ids": tok(t)["input_ids"]} for t in texts]
    args = TrainingArguments(output_dir=str(out), max_steps=3, per_device_train_batch_size=4,
                             learning_rate=5e-3, save_strategy="no", use_cpu=True,
                             report_to="none", disable_tqdm=True, seed=0)
    return Trainer(model=model or _lora_model(base), args=args, train_dataset=features,
                   data_collator=DataCollatorForLanguageModeling(tok, mlm=False),
                   processing_class=tok, callbacks=[callback])


def _meta(out: Path) -> dict[str, Any]:
    return json.loads((out / "ftdiag_meta.json").read_text())


def _status(meta: dict[str, Any], code: str) -> str:
    return next(c["status"] for c in meta["checks"] if c["code"] == code)


def _quiet() -> FtdiagCallback:
    shown: list[tuple[list[Finding], str]] = []
    cb = FtdiagCallback(show=lambda checks, where: shown.append((checks, where)))
    cb.shown = shown  # type: ignore[attr-defined]
    return cb


def test_healthy_sft_run_passes_and_records_its_evidence(tiny_llama: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "run"
    cb = _quiet()
    _sft(tiny_llama, out, cb).train()
    meta = _meta(out)
    assert meta["verdict"] != "fail", meta["findings"]
    assert {_status(meta, c) for c in ("L009", "D002", "D003", "A003")} == {"pass"}
    assert set(meta["checkpoints"]) == {"checkpoint-2", "checkpoint-4"}
    assert meta["base"] == meta["base_dir"] == str(tiny_llama.resolve())
    assert meta["base_config_hash"] and meta["base_fingerprint"].startswith("sha256:")
    assert meta["tokenizer"]["eos_token"] == "<|im_end|>"
    assert meta["hyperparameters"]["lora_r"] == 4
    assert meta["hyperparameters"]["target_modules"] == sorted(TARGETS)
    assert meta["sample"]["prompt"].startswith("Title: ")
    assert meta["data"]["examples"] > 0 and meta["result"]["steps"] == 4
    assert [where for _f, where in cb.shown][:1] == ["step 1"]  # type: ignore[attr-defined]


def test_the_run_folder_works_with_loss_report_check_adapter_and_doctor(
        tiny_llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _sft(tiny_llama, out, _quiet()).train()
    runner = CliRunner()
    loss = runner.invoke(app, ["loss-report", str(out), "--json"])
    log = json.loads(loss.stdout)["details"]
    assert log["format"] == "trainer_state" and log["steps"] == 4
    check = runner.invoke(app, ["check-adapter", str(out / "checkpoint-4"), "--static-only",
                                "--json"])
    assert check.exit_code == 0, check.output
    doctor = runner.invoke(app, ["doctor", str(out), "--json"])
    doc = json.loads(doctor.stdout)
    assert {"L", "S", "R"} <= set(doc["layers"]["run"]), doc["layers"]


def _cut_lora_gradients(model: Any) -> None:
    """What gradient checkpointing without input grads does: nothing reaches the LoRA weights."""
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.register_hook(lambda g: g * 0)


def test_cut_lora_gradients_stop_an_sft_run_at_step_1(tiny_llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    model = _lora_model(tiny_llama)
    _cut_lora_gradients(model)
    trainer = _sft(tiny_llama, out, _quiet(), model=model)
    with pytest.raises(FtdiagCheckError, match="L009") as err:
        trainer.train()
    assert trainer.state.global_step == 0  # stopped before the first optimizer step
    assert [c.code for c in err.value.checks] == ["L009"]
    meta = _meta(out)
    assert meta["verdict"] == "fail" and meta["findings"][0]["code"] == "L009"
    assert not list(out.glob("checkpoint-*"))


def test_on_error_warn_keeps_training_and_records_the_failure(tiny_llama: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "run"
    model = _lora_model(tiny_llama)
    _cut_lora_gradients(model)
    cb = FtdiagCallback(on_error="warn", show=lambda checks, where: None)
    trainer = _sft(tiny_llama, out, cb, model=model)
    trainer.train()
    assert trainer.state.global_step == 4
    meta = _meta(out)
    assert _status(meta, "L009") == "fail" and _status(meta, "A003") == "fail"


def test_frozen_lora_b_stops_a_plain_trainer_at_step_1(tiny_llama: Path, tmp_path: Path) -> None:
    model = _lora_model(tiny_llama)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.requires_grad_(False)  # B stays zero, so A's gradient is zero too
    trainer = _plain(tiny_llama, tmp_path / "run", _quiet(), pad_is_eos=False, model=model)
    with pytest.raises(FtdiagCheckError, match=r"non-zero gradient \(4 LoRA tensors are frozen"):
        trainer.train()


def test_pad_equal_to_eos_in_a_plain_trainer_gets_d003(tiny_llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _plain(tiny_llama, out, _quiet(), pad_is_eos=True).train()
    meta = _meta(out)
    d003 = next(f for f in meta["findings"] if f["code"] == "D003")
    assert d003["severity"] == "warn" and "pad_token == eos_token" in d003["hint"]
    assert d003 in meta["checks"]  # findings rows are checks rows (status and severity)
    assert meta["data"]["eos_in_inputs"] == meta["data"]["examples"] > 0
    assert meta["tokenizer"]["pad_token"] == meta["tokenizer"]["eos_token"]


def test_without_processing_class_the_eos_id_comes_from_the_model(tiny_llama: Path,
                                                                  tmp_path: Path) -> None:
    """A plain Trainer given no tokenizer: the model's generation config names EOS."""
    out = tmp_path / "run"
    trainer = _plain(tiny_llama, out, _quiet(), pad_is_eos=True)
    trainer.processing_class = None
    trainer.callback_handler.processing_class = None
    trainer.train()
    d003 = next(f for f in _meta(out)["findings"] if f["code"] == "D003")
    assert d003["severity"] == "warn" and d003["evidence"]["eos_id"] == 3
    assert d003["evidence"]["eos_source"] == "the model's generation_config"
    assert "from the model's generation_config" in d003["message"]


def test_a_distinct_pad_token_trains_eos(tiny_llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _plain(tiny_llama, out, _quiet(), pad_is_eos=False).train()
    assert _status(_meta(out), "D003") == "pass"


def test_an_unknown_on_error_is_refused() -> None:
    from ftdiag.errors import FtdiagError

    with pytest.raises(FtdiagError, match="on_error"):
        FtdiagCallback(on_error="ignore")  # type: ignore[arg-type]


def test_all_labels_masked_stop_at_step_1_with_d002(tiny_llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    trainer = _plain(tiny_llama, out, _quiet(), pad_is_eos=False)
    collate = trainer.data_collator

    def mask_everything(features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collate(features)
        batch["labels"][:] = -100  # e.g. a completion mask that never finds the response
        return batch

    trainer.data_collator = mask_everything
    with pytest.raises(FtdiagCheckError) as err:
        trainer.train()
    assert trainer.state.global_step == 0
    assert {c.code for c in err.value.checks} == {"L009", "D002"}
    d002 = next(f for f in _meta(out)["findings"] if f["code"] == "D002")
    assert d002["severity"] == "fail" and d002["evidence"]["no_labels"] == 4


def test_a_checkpoint_saved_before_the_lr_left_zero_is_not_called_untrained(
        tiny_llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # linear warmup: step 1 runs at lr 0, so checkpoint-1 holds lora_B == 0 by construction
    _sft(tiny_llama, out, _quiet(), steps=2, warmup_steps=2, save_steps=1).train()
    meta = _meta(out)
    assert meta["verdict"] != "fail", meta["findings"]
    assert set(meta["checkpoints"]) == {"checkpoint-2"}
    assert _status(meta, "A003") == "pass"
