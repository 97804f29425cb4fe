"""Synthetic and real training logs for the loss-report tests."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

EVAL_EVERY = 20


def healthy(n: int = 200, seed: int = 0) -> np.ndarray:
    """A loss that falls fast, then flattens, with a little batch noise."""
    s = np.arange(1, n + 1)
    return 2.5 * np.exp(-s / 60) + 0.8 + np.random.default_rng(seed).normal(0, 0.03, n)


def curve(kind: str, n: int = 200) -> np.ndarray:
    """Train loss for one of the story's failure modes."""
    s = np.arange(1, n + 1)
    noise = np.random.default_rng(1).normal(0, 0.03, n)
    y = healthy(n)
    if kind == "flat":
        y = 2.0 + noise
    elif kind == "diverging":
        y = np.where(s < n // 2, 2.0 * np.exp(-s / 30) + 0.8, 0.8 + (s - n // 2) * 0.04) + noise
    elif kind == "spike":
        y[n * 3 // 5] *= 5
    elif kind == "nan":
        y[n * 3 // 4:] = math.nan
    elif kind == "zero":
        y[n // 2:] = 0.0
    return y


def eval_curve(kind: str, n: int = 200) -> list[tuple[int, float]]:
    """Eval loss every EVAL_EVERY steps: tracking train, or rising after a minimum (overfitting)."""
    s = np.arange(EVAL_EVERY, n + 1, EVAL_EVERY)
    clean = 2.5 * np.exp(-s / 60) + 0.9
    if kind == "overfitting":
        clean = np.where(s <= 80, clean, clean[3] + (s - 80) * 0.004)
    return list(zip(s.tolist(), clean.tolist(), strict=True))


def history(losses: np.ndarray, evals: list[tuple[int, float]] | None = None,
            steps: list[int] | None = None, lr: float = 2e-4) -> list[dict[str, Any]]:
    """A Trainer-like log_history: train records, eval records, and the final summary."""
    steps = steps or list(range(1, len(losses) + 1))
    n = max(steps)
    rows: list[dict[str, Any]] = []
    for s, loss in zip(steps, losses, strict=True):
        rows.append({"epoch": s / 100, "grad_norm": 1.0, "step": s, "loss": float(loss),
                     "learning_rate": lr * (1 - s / (n + 1))})
    for s, v in evals or []:
        rows.append({"epoch": s / 100, "eval_loss": v, "eval_runtime": 0.1, "step": s})
    rows.sort(key=lambda r: r["step"])
    rows.append({"epoch": n / 100, "step": n, "train_loss": float(np.mean(losses)),
                 "train_runtime": 1.0})
    return rows


def write_state(directory: Path, rows: list[dict[str, Any]], **extra: Any) -> Path:
    """Write a trainer_state.json holding `rows` into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    steps = [r["step"] for r in rows]
    state = {"global_step": max(steps, default=0), "max_steps": max(steps, default=0),
             "num_train_epochs": 2, "log_history": rows, **extra}
    path = directory / "trainer_state.json"
    path.write_text(json.dumps(state))
    return path


def write_run(directory: Path, kind: str = "healthy", n: int = 200, eval_kind: str = "ok",
              with_eval: bool = True) -> Path:
    """A run dir with a trainer_state.json for one failure mode."""
    evals = eval_curve(eval_kind, n) if with_eval else None
    write_state(directory, history(curve(kind, n), evals))
    return directory


def train_tiny(out: Path, *, steps: int = 40, report_to: list[str] | None = None,
               lr: float = 1e-3, lora_r: int = 0) -> Path:
    """Train the tiny Llama with transformers' Trainer (fp32, CPU); logs every step.

    lora_r > 0 trains a LoRA adapter (alpha = 2r, q/v projections) instead of the whole model.
    """
    import torch
    from transformers import Trainer, TrainingArguments

    from ftdiag.testing import tiny

    tok = tiny.build_tokenizer()
    model = tiny.build_model("llama", vocab_size=len(tok))
    if lora_r:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=2 * lora_r,
                                                 target_modules=["q_proj", "v_proj"],
                                                 task_type="CAUSAL_LM"))
    enc = [tok(t + tok.eos_token)["input_ids"] for t in tiny.TOY_TEXTS]
    data = [{"input_ids": torch.tensor(ids), "labels": torch.tensor(ids)} for ids in enc] * 4
    args = TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=1,
        per_device_eval_batch_size=1,
        learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=5, logging_steps=1,
        eval_strategy="steps", eval_steps=10, save_strategy="steps", save_steps=steps // 2,
        report_to=report_to or [], use_cpu=True, disable_tqdm=True, seed=0,
        dataloader_num_workers=0, save_only_model=True,
    )
    trainer = Trainer(model=model.train(), args=args, train_dataset=data, eval_dataset=data[:4])
    trainer.train()
    return out
