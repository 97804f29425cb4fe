"""A015: a run whose saved adapters are bit-identical (a frozen adapter 'trained' by a Trainer).

The runs are real `Trainer` runs on the tiny Llama, saving checkpoint-N folders and a final
adapter as users' scripts do.
"""

from __future__ import annotations

from pathlib import Path

from ftdiag.adapters.check import check_adapter


def trainer_run(base: Path, out: Path, *, freeze_lora: bool) -> Path:
    """get_peft_model with random B, then 4 Trainer steps saving every 2; final adapter in out."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(base))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)  # as if passed in from an earlier run
    if freeze_lora:  # what prepare_model_for_kbit_training after get_peft_model does
        for name, p in model.named_parameters():
            p.requires_grad = "norm" in name and "layers.0." in name
    ids = tok(["a steel bottle", "a cotton shirt"] * 4, padding=True)["input_ids"]
    data = Dataset.from_dict({"input_ids": ids, "labels": ids})
    args = TrainingArguments(str(out), max_steps=4, save_steps=2, per_device_train_batch_size=2,
                             learning_rate=1e-2, report_to=[], use_cpu=True, logging_steps=1)
    Trainer(model=model, args=args, train_dataset=data).train()
    model.save_pretrained(str(out))
    return out


def a015(run: Path, base: Path) -> tuple[str, dict]:
    report = check_adapter(run, base=str(base), static_only=True)
    row = next(c for c in report.checks if c.code == "A015")
    return row.status, row.evidence


def test_a_frozen_adapter_run_is_a015(tiny_llama: Path, tmp_path: Path) -> None:
    run = trainer_run(tiny_llama, tmp_path / "frozen", freeze_lora=True)
    status, evidence = a015(run, tiny_llama)
    assert status == "fail"
    assert evidence["adapters"] == ["checkpoint-2", "checkpoint-4"]  # the final one is step 4
    assert evidence["identical"] == 2
    # the same verdict when the user points at one of the checkpoints
    assert a015(run / "checkpoint-2", tiny_llama)[0] == "fail"


def test_a_training_run_passes_a015(tiny_llama: Path, tmp_path: Path) -> None:
    run = trainer_run(tiny_llama, tmp_path / "trained", freeze_lora=False)
    status, evidence = a015(run, tiny_llama)
    assert status == "pass" and evidence["identical"] == 1


def test_a_lone_adapter_skips_a015(trained_adapter: Path, tiny_llama: Path) -> None:
    assert a015(trained_adapter, tiny_llama)[0] == "skip"
