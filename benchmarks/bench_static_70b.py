"""Time `ftdiag check-adapter --static-only` on a 70B-layout adapter (< 1.5 s, < 800 MB RSS).

80 layers x 7 targets (GQA: k/v project to 1024), r=16, bf16, ~0.4 GB; the base folder has only
Llama-2-70B's config.json. Same measurement as bench_static_7b.py (which holds the code).
"""

from __future__ import annotations

from bench_static_7b import LLAMA2_70B, run

if __name__ == "__main__":
    run(LLAMA2_70B)
