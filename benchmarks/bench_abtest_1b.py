"""ab-test at TinyLlama-1.1B scale: `bench_abtest.py` on a random model with that layout.

22 layers, hidden 2048, 32 heads / 4 KV heads, MLP 5632, SmolLM2's tokenizer (vocab 49152),
fp32 (~4.4 GiB), built from config with random weights (nothing downloaded) into
$FTDIAG_CACHE/bench-abtest-1b once; a random r=8 q/v LoRA. Then the naive A/B, `ftdiag
ab-test` and one loaded model, each its own process, as bench_abtest.py runs them.

    python benchmarks/bench_abtest_1b.py                  # 8 titles x 32 new tokens, fp32
    python benchmarks/bench_abtest_1b.py --dtype auto     # ftdiag's --dtype auto (texts may differ)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LAYOUT = {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
          "num_attention_heads": 32, "num_key_value_heads": 4, "max_position_embeddings": 2048,
          "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "rope_theta": 10000.0}


def build(root: Path) -> Path:
    """The base folder (skipped when already there): random fp32 weights, SmolLM2's tokenizer."""
    folder = root / "base"
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ftdiag.atomic import atomic_dir
    from ftdiag.model.load import resolve_model_dir

    tok = AutoTokenizer.from_pretrained(str(resolve_model_dir("smollm2-135m")))
    cfg = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **LAYOUT)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    with atomic_dir(folder) as tmp:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
    return folder


def main() -> None:
    from ftdiag.model.load import cache_dir

    base = build(cache_dir() / "bench-abtest-1b")
    env = {**os.environ, "FTDIAG_BENCH_BASE": str(base), "FTDIAG_BENCH_TARGETS": "q_proj,v_proj",
           "FTDIAG_BENCH_GOALS": "8,8,1.15"}  # the 1.1B goals: >= 8x, peak RSS <= 1.15x
    args = sys.argv[1:] or []
    if not any(a.startswith("--sizes") for a in args):
        args = ["--sizes", "8x32", *args]
    bench = Path(__file__).with_name("bench_abtest.py")
    sys.exit(subprocess.call([sys.executable, str(bench), *args], env=env))


if __name__ == "__main__":
    main()
