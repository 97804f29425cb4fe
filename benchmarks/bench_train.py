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


def matmul_peak(n: int = 2048, reps: int = 8) -> float:
    """fp32 GFLOP/s of a big torch matmul on this CPU (all threads torch uses)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def matmul_params(model: Any) -> int:
    """Parameters of every Linear-like matmul on the forward path (incl. a tied lm_head)."""
    total = 0
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and "lora_" not in name:
            total += mod.weight.numel()
    return total


def bench_ftdiag(base: str, records: int, steps: int, warmup: int, work: Path) -> float:
    from ftdiag.train import TrainConfig, train

    clock = Clock(warmup)
    train(TrainConfig(data=SAMPLE, out=work / "ftdiag", base=base, records=records,
                      max_steps=steps + warmup, eval_steps=10_000, logging_steps=10_000,
                      force=True), callbacks=[clock])
    return clock.rate


def bench_trl(base_dir: Path, records: int, steps: int, warmup: int, work: Path) -> float:
    """TRL SFTTrainer with its defaults on the same prompt/completion pairs and LoRA config."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from ftdiag.records import read_records
    from ftdiag.templates import load_template

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

    from ftdiag.data import prepare_data, set_training_pad
    from ftdiag.templates import load_template
    from ftdiag.train import Collator, as_features

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12, help="timed optimizer steps per contender")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--records", type=int, default=400)
    ap.add_argument("--base", default="smollm2-135m")
    ap.add_argument("--skip-trl", action="store_true")
    args = ap.parse_args()

    from ftdiag.cli import quiet_libraries
    from ftdiag.models import resolve_model_dir

    quiet_libraries()
    base_dir = resolve_model_dir(args.base)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, base {args.base}, "
          f"{args.steps} timed steps (+{args.warmup} warm-up), batch 8, fp32 CPU")
    peak = matmul_peak()
    print(f"fp32 matmul peak (2048²): {peak:.1f} GFLOP/s")
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
