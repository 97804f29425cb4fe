"""`ftdiag ab-test` in fp32 and in bf16 on this CPU: speed, and the share of titles whose text
changes. What `--dtype auto` weighs: it takes bf16 only where the start-up probe finds it native.

Each dtype runs as its own `ftdiag ab-test --json` process (bench_abtest.py's child), same
titles, adapter and settings. $FTDIAG_BENCH_BASE as in bench_abtest.py (default SmolLM2-135M);
`--layout-1b` uses bench_abtest_1b.py's TinyLlama-1.1B-layout base.

    python benchmarks/bench_dtype.py                      # SmolLM2-135M, 8 titles x 32 tokens
    python benchmarks/bench_dtype.py --layout-1b --titles 4 --new-tokens 8
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--titles", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--layout-1b", action="store_true", help="the TinyLlama-1.1B layout")
    args = p.parse_args()
    if args.layout_1b and "FTDIAG_BENCH_BASE" not in os.environ:
        sys.path.insert(0, str(HERE))
        from bench_abtest_1b import build

        from ftdiag.model.load import cache_dir

        os.environ["FTDIAG_BENCH_BASE"] = str(build(cache_dir() / "bench-abtest-1b"))
        os.environ["FTDIAG_BENCH_TARGETS"] = "q_proj,v_proj"
        # re-exec: bench_abtest reads the base when imported
        sys.exit(subprocess.call([sys.executable, __file__, *sys.argv[1:]]))
    sys.path.insert(0, str(HERE))
    import bench_abtest as ab

    from ftdiag.model.dtype import choose_dtype, probe_matmul

    ms = probe_matmul()
    print(f"dtype benchmark: {ab.BASE}; {ab.cpu_model()}; probe fp32 {ms['fp32']:.2f} ms, bf16 "
          f"{ms['bf16']:.2f} ms ({ms['bf16'] / ms['fp32']:.1f}x); load average "
          f"{os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="ftdiag-bench-dtype-") as tmp:
        adapter = ab.make_adapter(Path(tmp) / "adapter")
        titles = ab.write_titles(Path(tmp), args.titles, False)
        runs = {}
        for dtype in ("fp32", "bf16"):
            ns = argparse.Namespace(titles=args.titles, new_tokens=args.new_tokens,
                                    batch_size=0, threads=0, dtype=dtype)
            runs[dtype] = ab.spawn("ftdiag", ns, adapter, titles)
    f32, b16 = runs["fp32"], runs["bf16"]
    print(f"{'dtype':6}{'tok/s':>9}{'process s':>11}{'peak RSS MB':>13}")
    for name, r in runs.items():
        tps = r["tokens"] / r["gen_s"]
        print(f"{name:6}{tps:>9.1f}{r['wall_s']:>11.1f}{r['max_rss_mb']:>13.0f}")
    changed = sum(a != b for a, b in zip(f32["texts"], b16["texts"], strict=True))
    per_arm = [sum(a[k] != b[k] for a, b in zip(f32["texts"], b16["texts"], strict=True))
               for k in (0, 1)]
    speed = (b16["tokens"] / b16["gen_s"]) / (f32["tokens"] / f32["gen_s"])
    print(f"bf16 / fp32 generation speed: {speed:.2f}x; whole process "
          f"{f32['wall_s'] / b16['wall_s']:.2f}x")
    print(f"titles whose text changed from fp32: {changed}/{args.titles} (base arm "
          f"{per_arm[0]}, adapter arm {per_arm[1]})")
    print(f"--dtype auto here: {choose_dtype('auto', 'cpu', lambda: ms).reason}")


if __name__ == "__main__":
    main()
