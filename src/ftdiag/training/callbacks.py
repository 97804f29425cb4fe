"""Every Trainer callback ftdiag has: the train recipe's (live progress, the step-1 LoRA gradient
check, Ctrl-C) and FtdiagChecks, the body of the public FtdiagCallback (ftdiag.callback)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ftdiag.errors import FtdiagError
from ftdiag.findings import Finding, Report
from ftdiag.runmeta import META_FILE, write_meta
from ftdiag.training.checks import LabelStats, batch_checks, gradient_check, lora_grad_stats
from ftdiag.training.meta import run_meta, sample_of

log = logging.getLogger(__name__)

Show = Callable[[list[Finding], str], None]  # the checks of one event, where


@dataclass
class StepInfo:
    """What the progress bar shows after each optimizer step."""

    step: int
    max_steps: int
    epoch: float
    loss: float | None
    eval_loss: float | None
    tokens: int
    tokens_per_s: float
    elapsed: float


StepFn = Callable[[StepInfo], None]  # one optimizer step done


class ProgressCallback(TrainerCallback):
    """Calls `fn(StepInfo)` after every optimizer step (rank 0 only)."""

    def __init__(self, fn: StepFn) -> None:
        self.fn = fn
        self.start = time.perf_counter()
        self.tokens0 = 0
        self.loss: float | None = None
        self.eval_loss: float | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, **kw: Any) -> None:
        self.start = time.perf_counter()
        self.tokens0 = state.num_input_tokens_seen

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kw: Any) -> None:
        logs = logs or {}
        if "loss" in logs:
            self.loss = float(logs["loss"])
        if "eval_loss" in logs:
            self.eval_loss = float(logs["eval_loss"])
        self._emit(state)

    def on_step_end(self, args: TrainingArguments, state: TrainerState,
                    control: TrainerControl, **kw: Any) -> None:
        self._emit(state)

    def _emit(self, state: TrainerState) -> None:
        if not state.is_world_process_zero:
            return
        elapsed = time.perf_counter() - self.start
        tokens = state.num_input_tokens_seen - self.tokens0
        self.fn(StepInfo(state.global_step, state.max_steps, float(state.epoch or 0.0),
                         self.loss, self.eval_loss, state.num_input_tokens_seen,
                         tokens / elapsed if elapsed > 0 else 0.0, elapsed))


class GradCheckCallback(TrainerCallback):
    """Fail fast when, after step 1, no LoRA parameter has a non-zero gradient (L009)."""

    def __init__(self) -> None:
        self.stats: dict[str, Any] | None = None
        self.check: Finding | None = None

    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState,
                              control: TrainerControl, model: Any = None, **kw: Any) -> None:
        if self.stats is not None or model is None:
            return
        stats = lora_grad_stats(model)
        self.stats = asdict(stats)
        self.check = check = gradient_check(stats)
        if check.status == "fail":
            raise FtdiagCheckError([check], "step 1")


class InterruptCallback(TrainerCallback):
    """First Ctrl-C: save a checkpoint at the end of the current step and stop; second: abort."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            self.uninstall()
            raise KeyboardInterrupt
        self.requested = True

    def on_step_end(self, args: TrainingArguments, state: TrainerState,
                    control: TrainerControl, **kw: Any) -> TrainerControl:
        if self.requested:
            control.should_save = True
            control.should_training_stop = True
        return control


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after saving a resumable checkpoint."""

    def __init__(self, checkpoint: str | None) -> None:
        super().__init__(checkpoint)
        self.checkpoint = checkpoint


class FtdiagCheckError(FtdiagError):
    """A failing ftdiag check stopped training; `.checks` holds the failing findings."""

    def __init__(self, checks: list[Finding], where: str) -> None:
        first = checks[0]
        super().__init__(f"ftdiag stopped training at {where}: {first.code} {first.message}",
                         hint=first.hint)
        self.checks = checks


class FtdiagChecks(TrainerCallback):
    """Fail fast on LoRA runs that cannot learn; record the evidence beside the checkpoints.

    `show` prints each event's checks (ftdiag.callback.FtdiagCallback passes the stderr lines).
    """

    def __init__(self, on_error: Literal["raise", "warn"] = "raise", *, data_batches: int = 8,
                 check_saves: bool = True, template: str | None = None,
                 show: Show) -> None:
        if on_error not in ("raise", "warn"):
            raise FtdiagError(f"FtdiagCallback(on_error={on_error!r})",
                              hint="use on_error='raise' (stop training) or 'warn'")
        self.on_error = on_error
        self.data_batches = data_batches
        self.check_saves = check_saves
        self.template = template  # the prompt template with {title}, when the script has one
        self.show = show
        self._hook: Any = None
        self._reset()

    def _reset(self) -> None:
        """A fresh record for each `trainer.train()` call."""
        self._unhook()
        self.report = Report("train-callback", layers_run=["L", "D"])
        self.labels = LabelStats()
        self.checkpoints: dict[str, dict[str, Any]] = {}
        self.meta: dict[str, Any] = {}
        self._eos_id: int | None = None
        self._eos_source = ""
        self._tokenizer: Any = None
        self._grads_done = self._data_done = False
        self._lr_moved = False  # an optimizer step with lr > 0 happened (warmup starts at 0)
        self._no_labels_seen = False
        self._main = True
        self._out: Path | None = None

    # -- trainer events -------------------------------------------------------------------
    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, model: Any = None, processing_class: Any = None,
                       **kw: Any) -> None:
        self._reset()
        self._main = state.is_world_process_zero
        self._out = Path(args.output_dir) if args.output_dir else None
        tok = getattr(processing_class, "tokenizer", processing_class)
        self._tokenizer = tok
        self._eos_id, self._eos_source = eos_of(tok, model)
        if model is not None:
            self._hook = model.register_forward_pre_hook(self._see_batch, with_kwargs=True)
        self.meta = run_meta(args, model, tok, self.template)
        self._write()

    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState,
                              control: TrainerControl, model: Any = None, optimizer: Any = None,
                              **kw: Any) -> None:
        if not self._lr_moved:
            groups = getattr(optimizer, "param_groups", None)
            self._lr_moved = groups is None or any(g.get("lr", 1.0) > 0 for g in groups)
        if self._grads_done or model is None:
            return
        self._grads_done = True
        if args.deepspeed or args.fsdp:
            check = Finding("L009", "skip", "gradients are sharded (DeepSpeed/FSDP): not checked")
        else:
            check = gradient_check(lora_grad_stats(model))
        checks = [check]
        if check.status == "fail" and self.labels.batches:
            checks += self._data_checks()  # all labels masked explains zero gradients
        self._record(checks, f"step {state.global_step + 1}")

    def on_step_end(self, args: TrainingArguments, state: TrainerState,
                    control: TrainerControl, **kw: Any) -> None:
        if not self._data_done and (self.labels.batches >= self.data_batches
                                    or self._no_labels_seen):
            self._record(self._data_checks(), f"step {state.global_step}")

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kw: Any) -> None:
        if not (self.check_saves and self._main and self._out is not None):
            return
        ckpt = self._out / f"checkpoint-{state.global_step}"
        if not (ckpt / "adapter_config.json").is_file():
            return
        if not self._lr_moved:  # lora_B is still zero by construction: A003 would be wrong
            self._record([Finding("A003", "skip", "no optimizer step with lr > 0 yet (warmup "
                                  "starts at 0): static check skipped")], ckpt.name)
            return
        from ftdiag.adapters.static import run_static

        base_dir = self.meta.get("base_dir")
        static = run_static(ckpt, Path(base_dir) if base_dir else None)
        self.checkpoints[ckpt.name] = {"verdict": static.verdict,
                                       "findings": [f.to_dict() for f in static.findings]}
        self.report.checks = [c for c in self.report.checks if c.code[0] != "A"]  # newest only
        if "S" not in self.report.layers_run:
            self.report.layers_run.append("S")
        self._record(static.checks, ckpt.name)

    def on_train_end(self, args: TrainingArguments, state: TrainerState,
                     control: TrainerControl, **kw: Any) -> None:
        self._unhook()
        if not self._data_done:
            self._record(self._data_checks(), "end of training")
        from ftdiag.training.recipe import loss_summary

        first, last, best_eval = loss_summary(state.log_history)
        self.meta["result"] = {"steps": state.global_step, "first_loss": first,
                               "last_loss": last, "best_eval_loss": best_eval}
        self._write()

    # -- helpers --------------------------------------------------------------------------
    def _see_batch(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Forward pre-hook: count the labels of the first training batches the model gets."""
        if not module.training or self._data_done or self.labels.batches >= self.data_batches:
            return
        labels = kwargs.get("labels")
        if labels is None:
            self._no_labels_seen = True
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        if self.labels.batches == 0 and ids is not None:
            self.meta["sample"] = sample_of(ids, labels, self._tokenizer)
        self.labels.add(ids, labels.detach(), self._eos_id)

    def _data_checks(self) -> list[Finding]:
        self._data_done = True
        self._unhook()
        self.meta["data"] = {"source": "training batches", **vars(self.labels)}
        if self.labels.batches == 0:
            why = ("the model was called without labels" if self._no_labels_seen
                   else "no training batch was seen")
            return [Finding("D002", "skip", f"{why}: data checks skipped")]
        return batch_checks(self.labels, self._eos_id, eos_source=self._eos_source)

    def _record(self, checks: list[Finding], where: str) -> None:
        self.report.add(*checks)
        if self._main:
            self.show(checks, where)
        self._write()
        failed = [c for c in checks if c.status == "fail"]
        if failed and self.on_error == "raise":
            self._unhook()
            raise FtdiagCheckError(failed, where)

    def _write(self) -> None:
        if not (self._main and self._out is not None):
            return
        doc = self.report.to_dict()
        findings = [row for row in doc["checks"] if row["status"] in ("info", "warn", "fail")]
        self.meta.update(verdict=doc["verdict"], findings=findings, checks=doc["checks"],
                         checkpoints=self.checkpoints)  # one row schema in both lists
        try:
            write_meta(self._out, self.meta)
        except OSError as exc:  # never stop a run because the meta file could not be written
            log.warning("cannot write %s: %s", self._out / META_FILE, exc)

    def _unhook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None


def eos_of(tokenizer: Any, model: Any) -> tuple[int | None, str]:
    """The EOS id the run trains towards, and where it came from.

    The tokenizer when the Trainer has one (processing_class); else the model's generation
    config, then its config: a plain Trainer given no tokenizer still has the model.
    """
    tid = getattr(tokenizer, "eos_token_id", None)
    if isinstance(tid, int):
        return tid, "tokenizer"
    inner = getattr(model, "get_base_model", lambda: model)() if model is not None else None
    for where, cfg in (("generation_config", getattr(inner, "generation_config", None)),
                       ("config", getattr(inner, "config", None))):
        value = getattr(cfg, "eos_token_id", None)
        ids = value if isinstance(value, list) else [value]
        if ids and isinstance(ids[0], int):
            return ids[0], f"the model's {where}"
    return None, ""
