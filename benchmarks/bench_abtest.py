"""ab-test throughput and memory: ftdiag's way vs the naive way, on the embedded SmolLM2-135M.

ftdiag: one base copy, both arms in one mixed batch per step (`adapter_names`), sorted by length,
KV cache, inference_mode. Naive: two separately loaded models, `generate` once per prompt per arm.
Each way runs in its own subprocess so peak RSS (getrusage max RSS) is its own.

    python benchmarks/bench_abtest.py                    # 32 titles x 64 new tokens (a few min)
    python benchmarks/bench_abtest.py --titles 8 --new-tokens 16   # quick run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BASE = "smollm2-135m"
TITLES = [
    "Stainless Steel Insulated Water Bottle 750ml", "Wireless Bluetooth Headphones Over Ear",
    "Organic Cotton Crew Neck T-Shirt for Men", "USB-C to USB-C Braided Charging Cable 2m",
    "Non-Stick Frying Pan 28cm Induction", "Children's Picture Book: The Curious Fox",
    "Leather Bifold Wallet with Coin Pocket", "Ceramic Coffee Mug 350ml Dishwasher Safe",
    "Yoga Mat Non Slip 6mm Thick", "LED Desk Lamp with Wireless Charger",
    "Cast Iron Dutch Oven 5 Quart", "Men's Waterproof Hiking Boots",
    "Mechanical Gaming Keyboard RGB Backlit", "Bamboo Cutting Board Set of 3",
    "Portable Power Bank 20000mAh", "Women's Running Shoes Lightweight Breathable",
    "Electric Toothbrush with 2 Brush Heads", "Glass Food Storage Containers with Lids",
    "Noise Machine for Sleeping with 30 Sounds", "Kids Art Set 150 Pieces in Wooden Case",
    "Memory Foam Pillow Cervical Support", "Smart Plug Works with Alexa 4 Pack",
    "Acoustic Guitar Strings Phosphor Bronze", "Dog Leash Reflective 6ft Heavy Duty",
    "Hardcover Notebook A5 Dotted 200 Pages", "Camping Tent 4 Person Waterproof",
    "Silicone Baking Mat Set Non-Stick", "Bike Helmet for Adults with LED Light",
    "French Press Coffee Maker 1 Liter", "Wooden Puzzle Toy for Toddlers",
    "Sunglasses Polarized UV400 Unisex", "Resistance Bands Set with Handles",
]


def make_adapter(out: Path) -> Path:
    """A LoRA adapter on SmolLM2 with small random (non-zero) lora_B, so the arms differ."""
    from ftdiag.tiny import save_random_adapter

    return save_random_adapter(BASE, out, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])


def prompts(n: int, tokenizer: Any) -> list[str]:
    from ftdiag.templates import PromptTemplate

    return [PromptTemplate().render(t, tokenizer) for t in TITLES[:n]]


def run_ftdiag(adapter: str, n: int, new: int, batch: int) -> dict[str, Any]:
    """ftdiag's way: run_ab_test end to end; the generation phase timed inside it."""
    import ftdiag.abtest as ab
    from ftdiag.records import Record

    timing: dict[str, float] = {}
    original = ab.generate_arms

    def timed(*args: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        out = original(*args, **kw)
        timing["gen"] = time.perf_counter() - t
        return out

    ab.generate_arms = timed  # type: ignore[assignment]
    t0 = time.perf_counter()
    cfg = ab.ABConfig(adapter_dir=adapter, base=BASE, max_new_tokens=new, batch_size=batch)
    res = ab.run_ab_test(cfg, [Record(t) for t in TITLES[:n]])
    total = time.perf_counter() - t0
    texts = [[r.outputs["base"], r.outputs["adapter"]] for r in res.rows]
    tokens = sum(r.tokens["base"] + r.tokens["adapter"] for r in res.rows)
    return {"gen_s": timing["gen"], "total_s": total, "tokens": tokens, "texts": texts,
            "identical": res.summary.identical}


def run_naive(adapter: str, n: int, new: int) -> dict[str, Any]:
    """The naive way: base and base+adapter loaded separately, one prompt at a time."""
    import torch

    from ftdiag.models import load_adapter, load_base

    t0 = time.perf_counter()
    base = load_base(BASE)
    tuned = load_adapter(load_base(BASE), adapter)
    tok = base.tokenizer
    eos = base.model.generation_config.eos_token_id
    texts, tokens, gen = [], 0, 0.0
    for prompt in prompts(n, tok):
        pair = []
        for model in (base.model, tuned):
            enc = tok(prompt, return_tensors="pt")
            t = time.perf_counter()
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=new, do_sample=False, num_beams=1,
                                     pad_token_id=tok.pad_token_id)
            gen += time.perf_counter() - t
            ids = out[0, enc["input_ids"].shape[1]:].tolist()
            ids = ids[:ids.index(eos)] if eos in ids else ids
            tokens += len(ids)
            pair.append(tok.decode(ids, skip_special_tokens=True))
        texts.append(pair)
    return {"gen_s": gen, "total_s": time.perf_counter() - t0, "tokens": tokens, "texts": texts}


def run_one() -> dict[str, Any]:
    """The yardstick: one loaded model and one short generate."""
    import torch

    from ftdiag.models import load_base

    base = load_base(BASE)
    enc = base.tokenizer(prompts(1, base.tokenizer)[0], return_tensors="pt")
    with torch.no_grad():
        base.model.generate(**enc, max_new_tokens=8, do_sample=False)
    return {}


def child(args: argparse.Namespace) -> None:
    import logging
    import warnings

    import torch

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)  # same for every way; helps on a busy machine
    if args.mode == "ftdiag":
        out = run_ftdiag(args.adapter, args.titles, args.new_tokens, args.batch_size)
    elif args.mode == "naive":
        out = run_naive(args.adapter, args.titles, args.new_tokens)
    else:
        out = run_one()
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def spawn(mode: str, args: argparse.Namespace, adapter: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--adapter", str(adapter),
           "--titles", str(args.titles), "--new-tokens", str(args.new_tokens),
           "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        sys.exit(f"{mode} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--titles", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8, help="titles per batch (ftdiag)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--child", choices=["ftdiag", "naive", "one"])
    p.add_argument("--adapter")
    args = p.parse_args()
    args.titles = min(args.titles, len(TITLES))
    if args.child:
        args.mode = args.child
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="ftdiag-bench-") as tmp:
        adapter = make_adapter(Path(tmp) / "adapter")
        one = spawn("one", args, adapter)
        ft = spawn("ftdiag", args, adapter)
        naive = spawn("naive", args, adapter)
    same = sum(a == b for a, b in zip(ft["texts"], naive["texts"], strict=True))
    tps_ft, tps_naive = ft["tokens"] / ft["gen_s"], naive["tokens"] / naive["gen_s"]
    import torch

    threads = args.threads or torch.get_num_threads()
    print(f"ab-test benchmark: {BASE} on CPU ({os.cpu_count()} cores, {threads} torch threads), "
          f"{args.titles} titles x {args.new_tokens} new tokens x 2 arms, ftdiag batch "
          f"{args.batch_size} titles")
    print(f"{'way':<8}{'tokens':>8}{'gen s':>9}{'tok/s':>9}{'total s':>9}{'peak RSS MB':>13}")
    for name, r, tps in (("naive", naive, tps_naive), ("ftdiag", ft, tps_ft)):
        print(f"{name:<8}{r['tokens']:>8}{r['gen_s']:>9.1f}{tps:>9.1f}{r['total_s']:>9.1f}"
              f"{r['max_rss_mb']:>13.0f}")
    print(f"{'1 model':<8}{'':>8}{'':>9}{'':>9}{'':>9}{one['max_rss_mb']:>13.0f}")
    print(f"throughput ratio ftdiag/naive: {tps_ft / tps_naive:.1f}x (goal >= 5x)")
    print(f"peak RSS ftdiag / one model: {ft['max_rss_mb'] / one['max_rss_mb']:.2f}x "
          f"(goal <= 1.2x); naive / one model: {naive['max_rss_mb'] / one['max_rss_mb']:.2f}x")
    print(f"identical greedy text (both arms) ftdiag vs naive: {same}/{args.titles} "
          f"(goal >= {args.titles - 1}); base==adapter in ftdiag: {ft['identical']}")
    for i, (a, b) in enumerate(zip(ft["texts"], naive["texts"], strict=True)):
        if a != b:
            arm = "base" if a[0] != b[0] else "adapter"
            print(f"  differs: title {i + 1} ({TITLES[i]}), {arm} arm")


if __name__ == "__main__":
    main()
