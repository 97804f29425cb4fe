"""Training throughput: `ftdiag train` vs TRL SFTTrainer (defaults) vs a tuned plain LoRA loop.

Same model (embedded SmolLM2-135M unless --base), same sample data, same LoRA config
(r=16, alpha=32, dropout 0.05, all linear projections), batch 8, fp32 on CPU. Tokens are
non-pad input tokens. Steady-state rate: the first --warmup steps are not timed.

FLOPs: 6 × N × tokens with N = parameters of every matmul on the forward path (all Linear
layers of the decoder + the lm_head, which is tied to the embedding but still a 576×49152
matmul); embedding lookups, norms and attention scores are not counted. With a frozen base
the weight-gradient matmuls are skipped, so the work really done is closer to 4 × N × tokens;
both shares of peak are printed. Peak = this CPU's fp32 torch matmul rate (2048², measured here).

    python benchmarks/bench_train.py             # 12 timed steps per contender (~4-5 min)
    python benchmarks/bench_train.py --steps 4   # a short run
    python benchmarks/bench_train.py --batching  # pad share; grouped vs random vs packed
    python benchmarks/bench_train.py --precision --steps 4  # fp32 vs bf16 autocast

--batching: `ftdiag train`'s own pieces (model, TrainingArguments, collator) in a Trainer three
ways over the same steps: length-grouped batches (the default), random batches, and
padding-free packing (transformers' DataCollatorWithFlattening: one row per batch, position_ids
restart at each example, so the SDPA mask is block-diagonal). Prints the pad share of the
batches, tokens/s, the mean train loss of the timed steps, the eval loss after them (same eval
examples, padded, for all) and the share of the 4N roofline. Grouped and packed see the same
examples in the same steps, so their losses must agree: that checks the attention boundaries.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from transformers import PrinterCallback, TrainerCallback

SAMPLE = Path(__file__).resolve().parents[1] / "src/ftdiag/samples/amazon_titles_sample.json"
LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear",
        "task_type": "CAUSAL_LM"}


class Clock(TrainerCallback):
    """Times optimizer steps after `warmup`, counting non-pad tokens seen."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.t0, self.tok0 = warmup, 0.0, 0
        self.seconds, self.tokens = 0.0, 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step == self.warmup:
            self.t0, self.tok0 = time.perf_counter(), state.num_input_tokens_seen
        elif state.global_step > self.warmup:
            self.seconds = time.perf_counter() - self.t0
            self.tokens = state.num_input_tokens_seen - self.tok0

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def matmul_peak(n: int = 2048, reps: int = 8, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of a big torch matmul in `dtype` on this CPU (all threads torch uses)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
        if dtype != torch.float32 and time.perf_counter() - t > 20:  # emulated: enough
            reps = _ + 1
            break
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


class Losses(TrainerCallback):
    """The train loss of every logged step."""

    def __init__(self) -> None:
        self.by_step: dict[int, float] = {}

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        if logs and "loss" in logs:
            self.by_step[state.global_step] = float(logs["loss"])


def matmul_params(model: Any) -> int:
    """Parameters of every Linear-like matmul on the forward path (incl. a tied lm_head)."""
    total = 0
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and "lora_" not in name:
            total += mod.weight.numel()
    return total


def bench_ftdiag(base: str, records: int, steps: int, warmup: int, work: Path,
                 dtype: str = "fp32", seed: int = 42) -> float:
    return bench_ftdiag_losses(base, records, steps, warmup, work, dtype, seed)[0]


def bench_ftdiag_losses(base: str, records: int, steps: int, warmup: int, work: Path,
                        dtype: str = "fp32", seed: int = 42) -> tuple[float, dict[int, float]]:
    """`ftdiag train` at --dtype `dtype`: steady tokens/s and the loss of every step."""
    from ftdiag.training.recipe import TrainConfig, train

    clock, losses = Clock(warmup), Losses()
    train(TrainConfig(data=SAMPLE, out=work / "ftdiag", base=base, records=records,
                      max_steps=steps + warmup, eval_steps=10_000, logging_steps=1,
                      force=True, dtype=dtype, seed=seed), callbacks=[clock, losses])
    return clock.rate, losses.by_step


def main_precision(args: argparse.Namespace, base_dir: Path) -> None:
    """fp32 (two seeds: the run-to-run spread) against bf16 autocast, same steps and data."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ftdiag.model.dtype import probe_matmul
    from ftdiag.training.precision import TRAIN_BF16_MAX_RATIO, train_precision

    ms = probe_matmul()
    auto = train_precision("auto", "cpu", lambda: ms)
    print(f"start-up probe: fp32 {ms['fp32']:.2f} ms, bf16 {ms['bf16']:.2f} ms; --dtype auto "
          f"takes {auto.label} ({auto.choice.reason})")
    emulated = ms["bf16"] > 2 * ms["fp32"]
    peaks = {"fp32": matmul_peak()}
    if not emulated or args.force_bf16:
        peaks["bf16"] = matmul_peak(dtype=torch.bfloat16)
    print("matmul peak (2048²): " + ", ".join(f"{k} {v:.1f}" for k, v in peaks.items())
          + " GFLOP/s")
    n = matmul_params(get_peft_model(AutoModelForCausalLM.from_pretrained(str(base_dir)),
                                     LoraConfig(**LORA)))
    runs = [("fp32", 42), ("fp32", 43)] + [("bf16", 42)] * ("bf16" in peaks)
    out = {}
    with tempfile.TemporaryDirectory(prefix="ftdiag-bench-precision-") as tmp:
        for dtype, seed in runs:
            out[dtype, seed] = bench_ftdiag_losses(args.base, args.records, args.steps,
                                                   args.warmup, Path(tmp), dtype, seed)
            print(f"  {dtype} seed {seed}: {out[dtype, seed][0]:.1f} tokens/s", flush=True)
    steps = sorted(out["fp32", 42][1])
    if "bf16" not in peaks:
        rate = out["fp32", 42][0]
        print(f"fp32: {rate:.1f} tokens/s, {4 * n * rate / 1e9 / peaks['fp32']:.0%} of the 4N "
              f"roofline. bf16 autocast not run: this CPU emulates bf16 (the probe's bf16 matmul "
              f"took {ms['bf16'] / ms['fp32']:.0f}x fp32's time), so the run would take hours "
              f"and auto keeps fp32 (--force-bf16 runs it anyway)")
        return

    def gap(a: dict[int, float], b: dict[int, float]) -> float:
        return max(abs(a[k] - b[k]) for k in steps)

    spread = gap(out["fp32", 42][1], out["fp32", 43][1])
    drift = gap(out["fp32", 42][1], out["bf16", 42][1])
    print(f"{'run':16} {'tokens/s':>9} {'vs fp32':>8} {'4N share':>9} {'last loss':>10}")
    for (dtype, seed), (rate, losses) in out.items():
        print(f"{dtype + ' seed ' + str(seed):16} {rate:9.1f} "
              f"{rate / out['fp32', 42][0]:7.2f}x {4 * n * rate / 1e9 / peaks[dtype]:8.0%} "
              f"{losses[steps[-1]]:10.4f}")
    speed = out["bf16", 42][0] / out["fp32", 42][0]
    equal = drift <= spread
    print(f"loss per step, max |Δ|: bf16 vs fp32 {drift:.4f}; fp32 seed 42 vs 43 (run-to-run "
          f"spread) {spread:.4f} → {'equal' if equal else 'NOT equal'} curves")
    keep = speed >= 1.5 and equal
    print(f"goal: bf16 autocast >= 1.5x tokens/s at an equal loss curve: {speed:.2f}x → "
          f"{'bf16 pays here' if keep else 'keep fp32 here'} (auto switches at a probe ratio "
          f"<= {TRAIN_BF16_MAX_RATIO:.2f})")


def bench_trl(base_dir: Path, records: int, steps: int, warmup: int, work: Path) -> float:
    """TRL SFTTrainer with its defaults on the same prompt/completion pairs and LoRA config."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from ftdiag.prompts.records import read_records
    from ftdiag.prompts.template import load_template

    tmpl = load_template()
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    recs = [r for r in read_records(SAMPLE, require_text=True)[:records]
            if r.title.strip() and (r.content or "").strip()]
    ds = Dataset.from_list([{"prompt": tmpl.render(r.title), "completion": r.content}
                            for r in recs])
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    clock = Clock(warmup)
    args = SFTConfig(output_dir=str(work / "trl"), max_steps=steps + warmup,
                     per_device_train_batch_size=8, use_cpu=True, bf16=False, fp16=False,
                     report_to="none", save_strategy="no", logging_steps=10_000,
                     disable_tqdm=True, include_num_input_tokens_seen="non_padding")
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                         peft_config=LoraConfig(**LORA), callbacks=[clock])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return clock.rate


def bench_plain(base_dir: Path, records: int, steps: int, warmup: int) -> tuple[float, int]:
    """A tuned plain PyTorch LoRA loop on ftdiag's own batches (length-grouped, no Trainer)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from ftdiag.prompts.template import load_template
    from ftdiag.training.data import prepare_data, set_training_pad
    from ftdiag.training.recipe import Collator, as_features

    tok = AutoTokenizer.from_pretrained(str(base_dir))
    set_training_pad(tok)
    data = prepare_data(SAMPLE, tok, load_template(), records=records)
    feats = as_features(data.train)
    order = list(LengthGroupedSampler(8, lengths=[len(f["input_ids"]) for f in feats],
                                      generator=torch.Generator().manual_seed(0)))
    collate = Collator(int(tok.pad_token_id))
    batches = [collate([feats[i] for i in order[k:k + 8]]) for k in range(0, len(order), 8)]
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base_dir),
                                                                dtype=torch.float32),
                           LoraConfig(**LORA))
    n_matmul = matmul_params(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, foreach=True)
    model.train()
    tokens, t0 = 0, 0.0
    for step in range(steps + warmup):
        if step == warmup:
            t0 = time.perf_counter()
        batch = batches[step % len(batches)]
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= warmup:
            tokens += int(batch["attention_mask"].sum())
    return tokens / (time.perf_counter() - t0), n_matmul


def pad_share(lengths: list[int], order: list[int], batch: int = 8) -> tuple[float, float]:
    """(pad tokens / all tokens, the worst single batch's share) of right-padded batches."""
    pads = real = 0
    worst = 0.0
    for k in range(0, len(order), batch):
        chunk = [lengths[i] for i in order[k:k + batch]]
        pad = max(chunk) * len(chunk) - sum(chunk)
        real, pads = real + sum(chunk), pads + pad
        worst = max(worst, pad / (max(chunk) * len(chunk)))
    return pads / (pads + real), worst


def batch_orders(lengths: list[int], seed: int = 42) -> dict[str, list[int]]:
    """The example order of length-grouped and of random batches (as Trainer samples them)."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    grouped = list(LengthGroupedSampler(8, lengths=lengths,
                                        generator=torch.Generator().manual_seed(seed)))
    shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed))
    return {"grouped": grouped, "random": shuffled.tolist()}


def bench_batching(base: str, records: int, steps: int, warmup: int, work: Path,
                   mode: str) -> dict[str, float]:
    """tokens/s, mean train loss (timed steps) and eval loss of one batching `mode`."""
    from dataclasses import replace

    from transformers import DataCollatorWithFlattening, Trainer, set_seed

    from ftdiag.model.load import load_tokenizer, resolve_model_dir
    from ftdiag.prompts.template import load_template
    from ftdiag.training.data import prepare_data, set_training_pad
    from ftdiag.training.recipe import (
        Collator,
        TrainConfig,
        as_features,
        build_model,
        training_args,
    )

    base_dir = resolve_model_dir(base)
    tok = load_tokenizer(base_dir)
    set_training_pad(tok)
    cfg = TrainConfig(data=SAMPLE, out=work / mode, base=base, records=records,
                      max_steps=steps + warmup, logging_steps=1)
    data = prepare_data(SAMPLE, tok, load_template(), records=records, seed=cfg.seed)
    set_seed(cfg.seed)
    args = replace(training_args(cfg, work / mode, "cpu", torch.float32, len(data.train), False),
                   save_strategy="no", train_sampling_strategy=(
                       "random" if mode == "random" else "group_by_length"))
    model = build_model(base_dir, cfg, torch.float32)
    padded = Collator(int(tok.pad_token_id))
    collate = DataCollatorWithFlattening() if mode == "packed" else padded
    clock = Clock(warmup)
    trainer = Trainer(model=model, args=args, train_dataset=as_features(data.train),
                      data_collator=collate, processing_class=tok, callbacks=[clock])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history
              if "loss" in h and h.get("step", 0) > warmup]
    trainer.data_collator = padded  # every mode's eval loss: same examples, same padded batches
    ev = trainer.evaluate(eval_dataset=as_features(data.eval))
    return {"rate": clock.rate, "train_loss": sum(losses) / len(losses),
            "eval_loss": float(ev["eval_loss"])}


def main_batching(args: argparse.Namespace, peak: float) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ftdiag.model.load import load_tokenizer, resolve_model_dir
    from ftdiag.prompts.template import load_template
    from ftdiag.training.data import prepare_data, set_training_pad
    from ftdiag.training.recipe import as_features

    base_dir = resolve_model_dir(args.base)
    tok = load_tokenizer(base_dir)
    set_training_pad(tok)
    feats = as_features(prepare_data(SAMPLE, tok, load_template(), records=args.records).train)
    lengths = [len(f["input_ids"]) for f in feats]
    orders = batch_orders(lengths)
    print(f"{len(lengths)} train examples, {min(lengths)}-{max(lengths)} tokens "
          f"(mean {sum(lengths) / len(lengths):.1f}); pad share of one epoch of batch-8 batches "
          "(all batches; worst batch):")
    for mode, order in orders.items():
        share, worst = pad_share(lengths, order)
        print(f"  {mode:8} {share:6.1%}  worst batch {worst:.1%}")
    print("  packed      0.0%  (one row per batch, no pads)")
    n = matmul_params(get_peft_model(AutoModelForCausalLM.from_pretrained(str(base_dir)),
                                     LoraConfig(**LORA)))
    rows = []
    with tempfile.TemporaryDirectory(prefix="ftdiag-bench-batching-") as tmp:
        for mode in ("grouped", "random", "packed"):
            rows.append((mode, bench_batching(args.base, args.records, args.steps, args.warmup,
                                              Path(tmp), mode)))
            sys.stdout.flush()
    ref = rows[0][1]
    print(f"{'batching':10} {'tokens/s':>9} {'vs grouped':>10} {'train loss':>10} "
          f"{'eval loss':>9} {'4N share':>8}")
    for mode, r in rows:
        print(f"{mode:10} {r['rate']:9.1f} {r['rate'] / ref['rate']:9.2f}x "
              f"{r['train_loss']:10.4f} {r['eval_loss']:9.4f} "
              f"{4 * n * r['rate'] / 1e9 / peak:8.0%}")
    best = max(rows[1:], key=lambda row: row[1]["rate"])
    gain = best[1]["rate"] / ref["rate"] - 1
    print(f"switch the default only at ≥ +10% tokens/s at equal loss: best other ({best[0]}) "
          f"{gain:+.0%} → {'switch' if gain >= 0.10 else 'keep length-grouped batches'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12, help="timed optimizer steps per contender")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--records", type=int, default=400)
    ap.add_argument("--base", default="smollm2-135m")
    ap.add_argument("--skip-trl", action="store_true")
    ap.add_argument("--batching", action="store_true",
                    help="pad share; length-grouped vs random vs packed batches")
    ap.add_argument("--precision", action="store_true",
                    help="fp32 (two seeds) vs bf16 autocast: tokens/s, loss curves, roofline")
    ap.add_argument("--force-bf16", action="store_true",
                    help="with --precision: run bf16 even where the probe finds it emulated")
    args = ap.parse_args()

    from ftdiag.cli.app import quiet_libraries
    from ftdiag.model.load import resolve_model_dir

    quiet_libraries()
    base_dir = resolve_model_dir(args.base)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_abtest import cpu_model

    print(f"CPU: {cpu_model()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, base {args.base}, "
          f"{args.steps} timed steps (+{args.warmup} warm-up), batch 8, fp32 CPU")
    peak = matmul_peak()
    print(f"fp32 matmul peak (2048²): {peak:.1f} GFLOP/s; load average "
          f"{os.getloadavg()[0]:.2f}")
    if args.batching:
        main_batching(args, peak)
        return
    if args.precision:
        main_precision(args, base_dir)
        return
    with tempfile.TemporaryDirectory(prefix="ftdiag-bench-train-") as tmp:
        work = Path(tmp)
        plain, n = bench_plain(base_dir, args.records, args.steps, args.warmup)
        ours = bench_ftdiag(args.base, args.records, args.steps, args.warmup, work)
        trl = 0.0 if args.skip_trl else bench_trl(base_dir, args.records, args.steps,
                                                 args.warmup, work)
    print(f"matmul params N = {n / 1e6:.1f} M (decoder Linear layers + lm_head)")
    rows = [("ftdiag train", ours), ("TRL SFTTrainer (defaults)", trl), ("plain LoRA loop", plain)]
    print(f"{'contender':28} {'tokens/s':>9} {'vs plain':>9} {'6N share':>9} {'4N share':>9}")
    for name, rate in rows:
        if rate <= 0:
            print(f"{name:28} {'skipped':>9}")
            continue
        print(f"{name:28} {rate:9.1f} {rate / plain:8.2f}x {6 * n * rate / 1e9 / peak:8.0%} "
              f"{4 * n * rate / 1e9 / peak:8.0%}")
    ratio, share = ours / plain, 6 * n * ours / 1e9 / peak
    verdict = "met" if ratio >= 1.0 and share >= 0.4 else (
        "within 3% run-to-run noise" if ratio >= 0.97 and share >= 0.4 else "NOT met")
    print(f"goal ≥ 1.0× plain loop and ≥ 40% of peak (6N): {ratio:.2f}×, {share:.0%} → {verdict}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
