"""`ftdiag doctor` end to end at the TinyLlama-1.1B layout: time, peak RSS, where the time goes.

The base is bench_abtest_1b.py's (22 layers, hidden 2048, 32/4 heads, MLP 5632, SmolLM2's
tokenizer, fp32, random weights; built once in $FTDIAG_CACHE/bench-abtest-1b). The run dir: a
random r=8 q/v LoRA, a trainer_state.json whose loss falls 2.0 → 1.2 over 40 steps, and
ftdiag_meta.json naming the base. doctor runs as its own process (`--json`), as a user runs it;
"one model" is a process that only loads the base and generates 8 tokens (the RSS yardstick).

    python benchmarks/bench_doctor_1b.py               # 8 titles x 32 new tokens
    python benchmarks/bench_doctor_1b.py --titles 16 --new-tokens 48
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_abtest_1b import build

from ftdiag.model.load import cache_dir
from ftdiag.timing import LABELS


def run_dir(root: Path, base: Path) -> Path:
    """A training output dir doctor reads: adapter, trainer_state.json, ftdiag_meta.json."""
    from ftdiag.testing.tiny import save_random_adapter

    run = root / "run"
    save_random_adapter(base, run, target_modules=["q_proj", "v_proj"])
    history = [{"step": s, "epoch": s / 20, "loss": round(2.0 - 0.8 * s / 40, 4)}
               for s in range(1, 41)]
    (run / "trainer_state.json").write_text(json.dumps(
        {"global_step": 40, "max_steps": 40, "log_history": history}))
    (run / "ftdiag_meta.json").write_text(json.dumps({"tool": "ftdiag", "base": str(base)}))
    return run


def child_peak(cmd: list[str], base: Path
               ) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run one process; (result, wall s, its peak RSS MB) — peak RSS read by a wrapper."""
    wrap = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
            "print('PEAK', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
            "file=sys.stderr); sys.exit(p.returncode)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
           "FTDIAG_BENCH_BASE": str(base)}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", wrap, *cmd], capture_output=True, text=True,
                          env=env, check=False)
    wall = time.perf_counter() - t
    peak = next(int(x.split()[1]) for x in proc.stderr.splitlines() if x.startswith("PEAK "))
    return proc, wall, peak / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--titles", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--dtype", default="fp32", help="doctor's --dtype (auto: the probe decides)")
    args = p.parse_args()
    from bench_abtest import TITLES, cpu_model

    base = build(cache_dir() / "bench-abtest-1b")
    print(f"doctor benchmark: TinyLlama-1.1B layout ({base}), random q/v LoRA r=8, "
          f"{args.titles} titles x {args.new_tokens} new tokens, --dtype {args.dtype}; "
          f"{cpu_model()}; load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="ftdiag-bench-doctor-") as tmp:
        run = run_dir(Path(tmp), base)
        titles = Path(tmp) / "titles.txt"
        titles.write_text("\n".join(TITLES[:args.titles]) + "\n", encoding="utf-8")
        one = [sys.executable, str(Path(__file__).with_name("bench_abtest.py")), "--child",
               "one", "--adapter", str(run)]
        _, _, one_mb = child_peak(one, base)
        cmd = [sys.executable, "-m", "ftdiag", "doctor", str(run), "--base", str(base),
               "--titles", str(titles), "--max-new-tokens", str(args.new_tokens),
               "--dtype", args.dtype, "--json"]
        proc, wall, peak_mb = child_peak(cmd, base)
    if proc.returncode not in (0, 1):
        sys.exit(f"doctor failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    doc = json.loads(proc.stdout)
    timing = doc["details"]["timing"]
    summary = doc["details"]["ab"]["summary"]
    print(f"doctor: {wall:.1f} s whole process, peak RSS {peak_mb:.0f} MB = "
          f"{peak_mb / one_mb:.2f}x one loaded model ({one_mb:.0f} MB); verdict {doc['verdict']}; "
          f"dtype {summary['dtype']['dtype']} ({summary['dtype']['reason']})")
    print(f"where the {wall:.1f} s go (details.timing, {timing['wall_s']:.1f} s to the JSON):")
    for key, value in timing["parts_s"].items():
        print(f"  {LABELS.get(key, key):<44}{value:>7.2f} s")
    print(f"  {'other (loss layer, titles, verdicts)':<44}{timing['other_s']:>7.2f} s")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
