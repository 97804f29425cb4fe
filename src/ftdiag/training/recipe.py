"""The LoRA SFT recipe behind `ftdiag train`: read it top to bottom.

data → tokenizer with a pad distinct from EOS → prompt/description examples (loss on the
description + EOS only) → base + LoRA on all linear projections → transformers `Trainer` with
length-grouped batches → step-1 gradient check → final adapter written atomically beside
trainer_state.json, ftdiag_meta.json and the train/eval titles → static adapter check.
Runs unchanged under `accelerate launch` / `torchrun` (rank 0 alone writes and reports).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftdiag import atomic
from ftdiag.errors import FtdiagError
from ftdiag.findings import Details, Report
from ftdiag.model.load import (
    is_hub_id,
    load_tokenizer,
    pick_device_dtype,
    resolve_model_dir,
)
from ftdiag.prompts.template import PromptTemplate, load_template
from ftdiag.runmeta import META_FILE, read_meta, write_meta
from ftdiag.training.data import IGNORE, DataSummary, Example, prepare_data, set_training_pad
from ftdiag.training.meta import base_identity, created, library_versions, tokenizer_facts
from ftdiag.training.precision import Precision, train_precision

if TYPE_CHECKING:
    import torch
    from transformers import TrainerCallback

    from ftdiag.findings import Finding
    from ftdiag.training.callbacks import StepFn

    DataHook = Callable[[DataSummary, list[Finding]], None]

log = logging.getLogger(__name__)

OUR_FILES = (META_FILE, "trainer_state.json", "train_examples.jsonl", "eval_examples.jsonl")
FINAL_TMP = ".ftdiag-final.tmp"


@dataclass
class TrainConfig:
    """Everything `ftdiag train` takes (plain data; the CLI maps options 1:1)."""

    data: str | Path
    out: str | Path
    base: str = "smollm2-135m"
    revision: str | None = None  # Hub revision of `base` when it is a Hub id
    records: int | None = None
    eval_share: float = 0.1
    seed: int = 42
    epochs: float = 2.0
    lr: float = 2e-4
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] | None = None  # None: every linear projection of the arch
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 256
    max_steps: int = -1
    eval_steps: int | None = None
    logging_steps: int = 5
    template: str | Path | PromptTemplate | None = None
    title_field: str | None = None
    text_field: str | None = None
    resume: bool = False
    force: bool = False
    gradient_checkpointing: bool = False
    chat_template: bool = False
    save_total_limit: int = 2
    device: str | None = None
    dtype: str = "auto"  # auto, fp32, bf16 (CPU: autocast over fp32 weights), fp16 (CUDA)


@dataclass
class TrainResult:
    """What a run produced and how it went (the CLI's summary table)."""

    out_dir: Path
    adapter_dir: Path
    steps: int
    tokens: int
    seconds: float
    tokens_per_s: float
    first_loss: float
    last_loss: float
    best_eval_loss: float | None
    data: DataSummary
    static: Report | None
    report: Report
    resumed_from: str | None = None
    grad_check: dict[str, Any] = field(default_factory=dict)
    precision: str = ""  # what the matmuls ran in (Precision.label)
    precision_reason: str = ""


@dataclass
class TrainDetails(Details):
    """`ftdiag train`'s report details: the run's numbers (as in the meta file) and its data."""

    train: dict[str, Any]  # result_dict(): the same summary the adapter's meta file records
    data: DataSummary


def validate(cfg: TrainConfig) -> None:
    """Reject impossible hyperparameters before anything is loaded."""
    checks = [
        (cfg.lr > 0, f"--lr must be positive, got {cfg.lr}"),
        (cfg.epochs > 0 or cfg.max_steps > 0, "--epochs or --max-steps must be positive"),
        (cfg.lora_r > 0, f"--lora-r must be positive, got {cfg.lora_r}"),
        (cfg.lora_alpha > 0, f"--lora-alpha must be positive, got {cfg.lora_alpha}"),
        (0.0 <= cfg.lora_dropout <= 1.0, f"--lora-dropout must be in [0, 1], got "
                                         f"{cfg.lora_dropout}"),
        (cfg.batch_size > 0, f"--batch-size must be positive, got {cfg.batch_size}"),
        (cfg.grad_accum > 0, f"--grad-accum must be positive, got {cfg.grad_accum}"),
        (cfg.logging_steps > 0, "--logging-steps must be positive"),
        (cfg.eval_steps is None or cfg.eval_steps > 0, "--eval-steps must be positive"),
        (not (cfg.resume and cfg.force), "--resume and --force exclude each other"),
    ]
    for ok, message in checks:
        if not ok:
            raise FtdiagError(message)


def check_out_dir(out: Path, resume: bool, force: bool) -> str | None:
    """Protect an existing run: non-empty --out needs --resume or --force. Returns a checkpoint."""
    from transformers.trainer_utils import get_last_checkpoint

    if out.exists() and not out.is_dir():
        raise FtdiagError(f"--out {out} is a file, expected a directory")
    if resume:
        last = get_last_checkpoint(str(out)) if out.is_dir() else None
        if last is None:
            raise FtdiagError(f"--resume: no checkpoint-* in {out}",
                              hint="start a new run without --resume")
        return last
    if atomic.is_nonempty_dir(out) and not force:
        raise FtdiagError(f"--out {out} is not empty",
                          hint="pass --resume to continue it, --force to overwrite, "
                               "or choose another --out")
    return None


def clear_previous_run(out: Path) -> None:
    """--force: remove the previous run's checkpoints and ftdiag files (nothing else)."""
    for ckpt in out.glob("checkpoint-*"):
        shutil.rmtree(ckpt, ignore_errors=True)
    for name in OUR_FILES:
        (out / name).unlink(missing_ok=True)


def resolve_template(cfg: TrainConfig) -> PromptTemplate:
    if isinstance(cfg.template, PromptTemplate):
        return cfg.template
    return load_template(cfg.template, chat=cfg.chat_template)


class Collator:
    """Right-pad a batch to its longest example; labels -100 on pads (EOS keeps its label)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        import torch

        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def as_features(examples: list[Example]) -> list[dict[str, Any]]:
    return [{"input_ids": ex.input_ids, "labels": ex.labels} for ex in examples]


def build_model(base_dir: Path, cfg: TrainConfig, dtype: torch.dtype) -> Any:
    """Base model with LoRA adapters on `target_modules` (default: every linear projection)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=dtype)
    except Exception as exc:
        raise FtdiagError(f"cannot load model from {base_dir}: {exc}") from exc
    if is_hub_id(cfg.base):  # the adapter records the Hub id (portable), not the cache path
        model.name_or_path = cfg.base
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()  # else no gradient reaches the LoRA layers
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.target_modules or "all-linear", task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, lora, revision=cfg.revision)
    except ValueError as exc:
        raise FtdiagError(f"cannot apply LoRA: {exc}",
                          hint="check --target-modules against the model's module names") from exc


def default_eval_steps(n_train: int, cfg: TrainConfig, world: int) -> tuple[int, int]:
    """(total optimizer steps, eval/save interval): about five evaluations per run."""
    per_epoch = max(math.ceil(n_train / (cfg.batch_size * world)) // cfg.grad_accum, 1)
    total = cfg.max_steps if cfg.max_steps > 0 else math.ceil(per_epoch * cfg.epochs)
    return total, cfg.eval_steps or max(total // 5, 1)


def training_args(cfg: TrainConfig, out: Path, device: str, dtype: torch.dtype, n_train: int,
                  has_eval: bool, autocast_bf16: bool = False) -> Any:
    """TrainingArguments for the recipe: fp32 on CPU (bf16 autocast when `autocast_bf16`),
    length-grouped batches, rank-0 logging."""
    import torch
    from transformers import TrainingArguments

    world = int(os.environ.get("WORLD_SIZE", "1"))
    _total, every = default_eval_steps(n_train, cfg, world)
    return TrainingArguments(
        output_dir=str(out), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        learning_rate=cfg.lr, per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        logging_steps=cfg.logging_steps, logging_first_step=True,
        eval_strategy="steps" if has_eval else "no", eval_steps=every,
        save_strategy="steps", save_steps=every, save_total_limit=cfg.save_total_limit,
        prediction_loss_only=True,  # eval keeps the loss, not 49k-wide logits
        use_cpu=device == "cpu", bf16=autocast_bf16 or dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        train_sampling_strategy="group_by_length", remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding", report_to="none", disable_tqdm=True,
        seed=cfg.seed, data_seed=cfg.seed, dataloader_pin_memory=device != "cpu",
        ddp_find_unused_parameters=False,
    )


def build_meta(cfg: TrainConfig, base_dir: Path, template: PromptTemplate, tokenizer: Any,
               summary: DataSummary, targets: list[str], device: str,
               precision: Precision) -> dict[str, Any]:
    """ftdiag_meta.json: what other commands need to judge and reproduce this run."""
    return {
        "tool": "ftdiag", "created": created(),
        "base": str(cfg.base), "revision": cfg.revision, "base_dir": str(base_dir),
        **base_identity(base_dir),
        "template": template.text, "template_source": template.source,
        "tokenizer": tokenizer_facts(tokenizer),
        "data": {"path": summary.path, "sha256": summary.sha256,
                 "title_field": summary.title_field, "text_field": summary.text_field,
                 "records": cfg.records, "seed": cfg.seed, "eval_share": cfg.eval_share,
                 "summary": asdict(summary)},
        "hyperparameters": {
            "epochs": cfg.epochs, "lr": cfg.lr, "lora_r": cfg.lora_r,
            "lora_alpha": cfg.lora_alpha, "lora_dropout": cfg.lora_dropout,
            "target_modules": targets, "batch_size": cfg.batch_size,
            "grad_accum": cfg.grad_accum, "max_length": cfg.max_length,
            "max_steps": cfg.max_steps, "eval_steps": cfg.eval_steps,
            "gradient_checkpointing": cfg.gradient_checkpointing,
            "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        },
        "device": device, "dtype": str(precision.weights).replace("torch.", ""),
        "precision": {"compute": precision.label, "reason": precision.choice.reason},
        "versions": library_versions(),
    }


def write_final_adapter(trainer: Any, out: Path) -> None:
    """Save to a temp dir, then move each file into `out` (adapter_config.json last)."""
    tmp = out / FINAL_TMP
    if trainer.is_world_process_zero():
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        trainer.save_model(str(tmp))  # collective under FSDP/DeepSpeed; rank 0 writes
        if trainer.is_world_process_zero():
            (tmp / "training_args.bin").unlink(missing_ok=True)
            files = sorted(tmp.iterdir(), key=lambda p: p.name == "adapter_config.json")
            for f in files:
                os.replace(f, out / f.name)
    except OSError as exc:
        raise FtdiagError(f"cannot write the adapter to {out}: {exc}",
                          hint="free disk space; the checkpoints already in --out are intact"
                          ) from exc
    finally:
        if trainer.is_world_process_zero():
            shutil.rmtree(tmp, ignore_errors=True)


def static_check(out: Path, base_dir: Path) -> Report:
    """Static adapter checks (A001–A015) on the written adapter."""
    from ftdiag.adapters.static import run_static

    return run_static(out, base_dir)


def loss_summary(history: list[dict[str, Any]]) -> tuple[float, float, float | None]:
    """First and last logged train loss, best eval loss."""
    losses = [float(h["loss"]) for h in history if "loss" in h]
    evals = [float(h["eval_loss"]) for h in history if "eval_loss" in h]
    first, last = (losses[0], losses[-1]) if losses else (math.nan, math.nan)
    return first, last, min(evals) if evals else None


def train(cfg: TrainConfig, *, callbacks: list[TrainerCallback] | None = None,
          progress: StepFn | None = None, on_data: DataHook | None = None) -> TrainResult:
    """Fine-tune `cfg.base` with LoRA on `cfg.data`, write everything to `cfg.out`.

    `on_data(summary, checks)` is called (rank 0) once the data is ready, before training;
    `progress(StepInfo)` after every optimizer step.
    """
    from transformers import PrinterCallback, Trainer, set_seed

    from ftdiag.training.callbacks import (
        GradCheckCallback,
        InterruptCallback,
        ProgressCallback,
        TrainingInterrupted,
    )

    # 1. inputs: options, --out protection, base model, tokenizer with a pad distinct from EOS
    validate(cfg)
    out = Path(cfg.out).expanduser().resolve()
    checkpoint = check_out_dir(out, cfg.resume, cfg.force)
    base_dir = resolve_model_dir(cfg.base, cfg.revision)
    device, _ = pick_device_dtype(cfg.device)
    precision = train_precision(cfg.dtype, device)
    dtype = precision.weights
    tokenizer = load_tokenizer(base_dir)
    set_training_pad(tokenizer)
    template = resolve_template(cfg)

    # 2. data: filter with reasons, split by title, tokenize with labels on the description
    data = prepare_data(cfg.data, tokenizer, template, records=cfg.records,
                        eval_share=cfg.eval_share, seed=cfg.seed, max_length=cfg.max_length,
                        title_field=cfg.title_field, text_field=cfg.text_field)
    if on_data is not None and int(os.environ.get("RANK", "0")) == 0:
        on_data(data.summary, data.checks)

    # 3. model: base + LoRA; arguments (this also joins the process group under DDP)
    set_seed(cfg.seed)
    args = training_args(cfg, out, device, dtype, len(data.train), bool(data.eval),
                         precision.autocast_bf16)
    model = build_model(base_dir, cfg, dtype)
    targets = sorted(model.peft_config["default"].target_modules)
    args.distributed_state.wait_for_everyone()  # every rank checked --out before rank 0 writes
    main = args.process_index == 0
    if main:
        if cfg.force:
            clear_previous_run(out)
        meta = build_meta(cfg, base_dir, template, tokenizer, data.summary, targets, device,
                          precision)
        write_meta(out, meta)
        from ftdiag.training.data import examples_jsonl

        atomic.write_text(out / "train_examples.jsonl", examples_jsonl(data.train))
        atomic.write_text(out / "eval_examples.jsonl", examples_jsonl(data.eval))

    # 4. train: Trainer + our callbacks (grad check after step 1, Ctrl-C → checkpoint)
    grad_check, interrupt = GradCheckCallback(), InterruptCallback()
    extra: list[Any] = [grad_check, interrupt, *(callbacks or [])]
    if progress is not None:
        extra.append(ProgressCallback(progress))
    trainer = Trainer(model=model, args=args, train_dataset=as_features(data.train),
                      eval_dataset=as_features(data.eval) or None,
                      data_collator=Collator(int(tokenizer.pad_token_id)),
                      processing_class=tokenizer, callbacks=extra)
    trainer.remove_callback(PrinterCallback)  # library code never prints
    if args.world_size == 1:
        interrupt.install()
    start = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except OSError as exc:
        raise FtdiagError(f"cannot write a checkpoint to {out}: {exc}",
                          hint="free disk space; earlier checkpoints are intact") from exc
    finally:
        interrupt.uninstall()
    seconds = time.perf_counter() - start
    if interrupt.requested:
        from transformers.trainer_utils import get_last_checkpoint

        raise TrainingInterrupted(get_last_checkpoint(str(out)))

    # 5. outputs: adapter (atomic), trainer_state.json, meta with results, static check
    write_final_adapter(trainer, out)
    state = trainer.state
    first, last, best_eval = loss_summary(state.log_history)
    tokens = int(state.num_input_tokens_seen)
    result = TrainResult(out, out, state.global_step, tokens, seconds,
                         tokens / seconds if seconds > 0 else 0.0, first, last, best_eval,
                         data.summary, None, Report("train", layers_run=["D"]), checkpoint,
                         grad_check.stats or {},
                         precision.label, precision.choice.reason)
    result.report.add(*data.checks)
    if grad_check.check is not None:
        result.report.add(grad_check.check)  # L009, the same check FtdiagCallback runs
    if main:
        atomic.write_text(out / "trainer_state.json", _state_json(state))
        result.static = static_check(out, base_dir)
        result.report.add(*result.static.checks)
        result.report.layers_run.append("S")
        meta = read_meta(out)
        meta["result"] = result_dict(result)
        write_meta(out, meta)
    result.report.details = TrainDetails(result_dict(result), data.summary)
    args.distributed_state.wait_for_everyone()
    return result


def result_dict(r: TrainResult) -> dict[str, Any]:
    """The summary numbers of a run (JSON and the meta file)."""
    return {"out_dir": str(r.out_dir), "adapter_dir": str(r.adapter_dir), "steps": r.steps,
            "tokens": r.tokens, "seconds": round(r.seconds, 2),
            "tokens_per_s": round(r.tokens_per_s, 1), "precision": r.precision,
            "precision_reason": r.precision_reason, "first_loss": r.first_loss,
            "last_loss": r.last_loss, "best_eval_loss": r.best_eval_loss,
            "resumed_from": r.resumed_from, "grad_check": r.grad_check,
            "static_verdict": r.static.verdict if r.static is not None else None}


def _state_json(state: Any) -> str:
    import json

    return json.dumps(asdict(state), indent=2, sort_keys=True, default=str) + "\n"
