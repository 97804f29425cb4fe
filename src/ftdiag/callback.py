"""`FtdiagCallback`: ftdiag's training checks inside your own TRL / transformers / Unsloth script.

    from ftdiag import FtdiagCallback
    SFTTrainer(..., callbacks=[FtdiagCallback()])

Step 1: LoRA gradients (L009) — a failing check stops training (or warns, `on_error="warn"`).
First batches: the labels the model is fed (D002 trainable labels, D003 EOS trained).
Each save: the static adapter check on `checkpoint-N` (A0xx).
Every check is printed as it comes and recorded, with the run's evidence, in
`output_dir/ftdiag_meta.json`, so `loss-report`, `check-adapter` and `doctor` read the run folder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ftdiag import atomic
from ftdiag.callback_meta import run_meta, sample_of
from ftdiag.errors import FtdiagError
from ftdiag.findings import Finding, Report
from ftdiag.templates import META_FILE
from ftdiag.train_checks import LabelStats, batch_checks, gradient_check, lora_grad_stats

log = logging.getLogger(__name__)

Show = Callable[[list[Finding], str], None]  # the checks of one event, where


class FtdiagCheckError(FtdiagError):
    """A failing ftdiag check stopped training; `.checks` holds the failing findings."""

    def __init__(self, checks: list[Finding], where: str) -> None:
        first = checks[0]
        super().__init__(f"ftdiag stopped training at {where}: {first.code} {first.message}",
                         hint=first.hint)
        self.checks = checks


class FtdiagCallback(TrainerCallback):
    """Fail fast on LoRA runs that cannot learn; record the evidence beside the checkpoints."""

    def __init__(self, on_error: Literal["raise", "warn"] = "raise", *, data_batches: int = 8,
                 check_saves: bool = True, template: str | None = None,
                 show: Show | None = None) -> None:
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
        self._eos_id = getattr(tok, "eos_token_id", None)
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
        from ftdiag.train import loss_summary

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
        return batch_checks(self.labels, self._eos_id)

    def _record(self, checks: list[Finding], where: str) -> None:
        self.report.add(*checks)
        if self._main:
            (self.show or _default_show())(checks, where)
        self._write()
        failed = [c for c in checks if c.status == "fail"]
        if failed and self.on_error == "raise":
            self._unhook()
            raise FtdiagCheckError(failed, where)

    def _write(self) -> None:
        if not (self._main and self._out is not None):
            return
        doc = self.report.to_dict()
        self.meta.update(verdict=doc["verdict"], findings=doc["findings"], checks=doc["checks"],
                         checkpoints=self.checkpoints)
        try:
            atomic.write_json(self._out / META_FILE, self.meta)
        except OSError as exc:  # never stop a run because the meta file could not be written
            log.warning("cannot write %s: %s", self._out / META_FILE, exc)

    def _unhook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None


def _default_show() -> Show:
    from ftdiag.render.callback import print_checks

    return print_checks

