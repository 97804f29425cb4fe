"""ab-test speed and memory: `ftdiag ab-test` vs the naive A/B, on the embedded SmolLM2-135M.

ftdiag: the real CLI (`ab-test --json`): preflight, one base load + PEFT, runtime checks, then
both arms in one mixed batch per step (`adapter_names`), greedy decode with finished rows leaving
the batch and the template's shared prefix run once. Naive: two separately loaded models,
`generate` once per prompt per arm. Each way is its own subprocess: "process s" is that whole
process (start-up, imports, loads, checks, exit: ftdiag's child exits as the CLI does, the naive
one as a script does), peak RSS its own (getrusage max RSS).

    python benchmarks/bench_abtest.py                        # 16x48 and 32x64 (several minutes)
    python benchmarks/bench_abtest.py --sizes 8x16           # quick run
    python benchmarks/bench_abtest.py --repeats 3            # 3 back-to-back pairs, median

Where ftdiag's time goes is the CLI's own `details.timing` (wall time from its process's start).
$FTDIAG_BENCH_BASE names another base folder (bench_abtest_1b.py: the TinyLlama-1.1B layout).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ftdiag.timing import LABELS

BASE = os.environ.get("FTDIAG_BENCH_BASE", "smollm2-135m")
TARGETS = os.environ.get("FTDIAG_BENCH_TARGETS", "q_proj,k_proj,v_proj,o_proj").split(",")
# goals: generation tok/s ratio, whole-process ratio, peak RSS / one model (135M by default)
GOALS = [float(x) for x in os.environ.get("FTDIAG_BENCH_GOALS", "10,6,1.1").split(",")]
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
    from ftdiag.testing.tiny import save_random_adapter

    return save_random_adapter(BASE, out, target_modules=TARGETS)


def prompts(n: int, tokenizer: Any) -> list[str]:
    from ftdiag.prompts.template import PromptTemplate

    return [PromptTemplate().render(t, tokenizer) for t in TITLES[:n]]


def cpu_model() -> str:
    """The CPU this ran on (/proc/cpuinfo), its core count and its native bf16/AMX flags."""
    name, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name == "unknown CPU":
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    native = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags] or ["AVX2 only"]
    return f"{name} ({os.cpu_count()} cores; {', '.join(native)})"


def write_titles(folder: Path, n: int, references: bool) -> Path:
    """The first n titles as a .txt, or as JSONL with a ~100-token reference each."""
    if not references:
        path = folder / f"titles-{n}.txt"
        path.write_text("\n".join(TITLES[:n]) + "\n", encoding="utf-8")
        return path
    path = folder / f"titles-{n}.jsonl"
    ref = ("A dependable {t}, made from durable materials and finished with care. It is easy to "
           "use, easy to clean and built to last for years of daily use at home, at work or on "
           "the road. Thoughtful details make the {t} comfortable and practical, and it comes "
           "ready to use straight out of the box.")
    path.write_text("".join(json.dumps({"title": t, "content": ref.format(t=t.lower())}) + "\n"
                            for t in TITLES[:n]), encoding="utf-8")
    return path


def run_ftdiag(adapter: str, titles: str, new: int, batch: int, dtype: str) -> dict[str, Any]:
    """ftdiag's way: the `ftdiag ab-test --json` CLI in this process, as the executable runs it."""
    import contextlib
    import io

    import ftdiag.cli.app
    from ftdiag.timing import count_from_process_start

    count_from_process_start()  # as `ftdiag` (cli.main) does: details.timing from process start
    argv = ["ftdiag", "ab-test", "--adapter", adapter, "--base", BASE, "--titles", titles,
            "--max-new-tokens", str(new), "--batch-size", str(batch), "--dtype", dtype, "--json"]
    buf = io.StringIO()
    old, sys.argv = sys.argv, argv
    try:
        with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
            ftdiag.cli.app.app()  # main() without its exit: the child exits as main does, below
    finally:
        sys.argv = old
    doc = json.loads(buf.getvalue())
    rows = doc["details"]["rows"]
    texts = [[r["outputs"]["base"], r["outputs"]["adapter"]] for r in rows]
    tokens = sum(r["tokens"]["base"] + r["tokens"]["adapter"] for r in rows)
    timing = doc["details"]["timing"]
    parts = timing["parts_s"]
    return {"gen_s": parts["prefill"] + parts["decode"], "tokens": tokens, "texts": texts,
            "timing": timing, "dtype": doc["details"]["summary"]["dtype"],
            "identical": doc["details"]["summary"]["identical"],
            "calls": doc["details"]["summary"]["plan"]["generate_calls"]}


def run_naive(adapter: str, n: int, new: int) -> dict[str, Any]:
    """The naive way: base and base+adapter loaded separately, one prompt at a time."""
    import torch

    from ftdiag.model.load import load_adapter, load_base

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

    from ftdiag.model.load import load_base

    base = load_base(BASE)
    enc = base.tokenizer(prompts(1, base.tokenizer)[0], return_tensors="pt")
    with torch.no_grad():
        base.model.generate(**enc, max_new_tokens=8, do_sample=False)
    return {}


def child(args: argparse.Namespace) -> None:
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # same for every way; helps on a busy machine
    if args.mode == "ftdiag":
        out = run_ftdiag(args.adapter, args.titles_file, args.new_tokens, args.batch_size,
                         args.dtype)
    elif args.mode == "naive":
        out = run_naive(args.adapter, args.titles, args.new_tokens)
    else:
        out = run_one()
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))
    if args.mode == "ftdiag":  # as `ftdiag` itself exits (cli.main): no interpreter teardown
        from ftdiag.cli.app import exit_now

        exit_now(0)


def spawn(mode: str, args: argparse.Namespace, adapter: Path, titles: Path) -> dict[str, Any]:
    """One way in its own process; wall_s is that whole process (start-up to exit)."""
    cmd = [sys.executable, __file__, "--child", mode, "--adapter", str(adapter),
           "--titles", str(args.titles), "--titles-file", str(titles),
           "--new-tokens", str(args.new_tokens), "--batch-size", str(args.batch_size),
           "--threads", str(args.threads), "--dtype", args.dtype]
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false"}
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        sys.exit(f"{mode} run failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(line[len("RESULT "):]), "wall_s": wall}


def report(args: argparse.Namespace, ft: dict[str, Any], naive: dict[str, Any],
           one: dict[str, Any]) -> None:
    """Both ways side by side, the ratios against the goals, where ftdiag's time goes."""
    n = args.titles
    same = sum(a == b for a, b in zip(ft["texts"], naive["texts"], strict=True))
    tps_ft, tps_naive = ft["tokens"] / ft["gen_s"], naive["tokens"] / naive["gen_s"]
    print(f"\n== {n} titles x {args.new_tokens} new tokens x 2 arms (greedy) ==")
    print(f"{'way':<8}{'tokens':>8}{'gen s':>9}{'tok/s':>9}{'process s':>11}{'peak RSS MB':>13}")
    for name, r, tps in (("naive", naive, tps_naive), ("ftdiag", ft, tps_ft)):
        print(f"{name:<8}{r['tokens']:>8}{r['gen_s']:>9.1f}{tps:>9.1f}{r['wall_s']:>11.1f}"
              f"{r['max_rss_mb']:>13.0f}")
    print(f"{'1 model':<8}{'':>37}{one['max_rss_mb']:>13.0f}")
    print(f"generation tok/s ftdiag/naive: {tps_ft / tps_naive:.1f}x (goal >= {GOALS[0]:g}x)")
    print(f"whole process naive/ftdiag:    {naive['wall_s'] / ft['wall_s']:.1f}x "
          f"(goal >= {GOALS[1]:g}x)")
    print(f"peak RSS ftdiag / one model:   {ft['max_rss_mb'] / one['max_rss_mb']:.2f}x "
          f"(goal <= {GOALS[2]:g}x); naive / one model: "
          f"{naive['max_rss_mb'] / one['max_rss_mb']:.2f}x")
    print(f"identical greedy text (both arms) ftdiag vs naive: {same}/{n} (goal >= {n - 1}); "
          f"base==adapter in ftdiag: {ft['identical']}; ftdiag batches: {ft['calls']}")
    for i, (a, b) in enumerate(zip(ft["texts"], naive["texts"], strict=True)):
        if a != b:
            arm = "base" if a[0] != b[0] else "adapter"
            print(f"  differs: title {i + 1} ({TITLES[i]}), {arm} arm")
    print(f"ftdiag dtype: {ft['dtype']['dtype']} ({ft['dtype']['reason']})")
    timing = ft["timing"]
    print(f"where ftdiag's {ft['wall_s']:.1f} s go (details.timing, {timing['wall_s']:.1f} s "
          f"from process start to the JSON; the rest is exit):")
    for key, value in timing["parts_s"].items():
        print(f"  {LABELS.get(key, key):<44}{value:>7.2f} s")
    print(f"  {'other (titles, prompts, rows, verdicts)':<44}{timing['other_s']:>7.2f} s")
    print(f"naive's {naive['wall_s']:.1f} s: {naive['gen_s']:.1f} s generating, "
          f"{naive['wall_s'] - naive['gen_s']:.1f} s start-up, imports and two loads")


def summarize(args: argparse.Namespace,
              pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """The ratios of each back-to-back pair, and their median (the figure to quote)."""
    gen = sorted((f["tokens"] / f["gen_s"]) / (n["tokens"] / n["gen_s"]) for f, n in pairs)
    proc = sorted(n["wall_s"] / f["wall_s"] for f, n in pairs)
    print(f"\n{args.titles}x{args.new_tokens}, {len(pairs)} back-to-back pairs: generation "
          f"{', '.join(f'{g:.1f}x' for g in gen)} (median {statistics.median(gen):.1f}x); whole "
          f"process {', '.join(f'{p:.1f}x' for p in proc)} (median {statistics.median(proc):.1f}x)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="16x48,32x64",
                   help="comma-separated TITLESxNEW_TOKENS workloads, each run both ways")
    p.add_argument("--batch-size", type=int, default=0, help="ftdiag titles per batch (0: auto)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--ftdiag-only", action="store_true", help="skip the naive way (tuning)")
    p.add_argument("--repeats", type=int, default=1,
                   help="back-to-back ftdiag/naive pairs per size; >1 adds the median ratios")
    p.add_argument("--with-references", action="store_true",
                   help="give ftdiag a reference per title (adds the reference-NLL phase)")
    p.add_argument("--dtype", default="fp32",
                   help="ftdiag's --dtype (fp32: the naive way's dtype, so texts compare)")
    p.add_argument("--child", choices=["ftdiag", "naive", "one"])
    p.add_argument("--adapter")
    p.add_argument("--titles", type=int, default=16)
    p.add_argument("--titles-file")
    p.add_argument("--new-tokens", type=int, default=48)
    args = p.parse_args()
    if args.child:
        args.mode = args.child
        child(args)
        return
    import torch

    threads = args.threads or torch.get_num_threads()
    print(f"ab-test benchmark: {BASE} + random LoRA ({','.join(TARGETS)} r=8), ftdiag --dtype "
          f"{args.dtype}; {cpu_model()}, {threads} torch threads; load average "
          f"{os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="ftdiag-bench-") as tmp:
        adapter = make_adapter(Path(tmp) / "adapter")
        one = spawn("one", args, adapter, Path(tmp))
        for size in args.sizes.split(","):
            n, new = (int(x) for x in size.lower().split("x"))
            args.titles, args.new_tokens = min(n, len(TITLES)), new
            titles = write_titles(Path(tmp), args.titles, args.with_references)
            pairs = []
            for _ in range(args.repeats):  # each pair back to back: drift hits both ways alike
                ft = spawn("ftdiag", args, adapter, titles)
                if args.ftdiag_only:
                    print(json.dumps({k: v for k, v in ft.items() if k != "texts"}, indent=1))
                    continue
                naive = spawn("naive", args, adapter, titles)
                report(args, ft, naive, one)
                pairs.append((ft, naive))
            if len(pairs) > 1:
                summarize(args, pairs)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
