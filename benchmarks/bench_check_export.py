"""Time `ftdiag check-export` on a 1B-layout merged safetensors folder (target < 4 s, < 400 MB).

TinyLlama-1.1B shapes (22 layers, hidden 2048, GQA 32/4 heads, vocab 32000), random bf16 values:
a base folder, a LoRA adapter (r=16, the seven linear targets, or --targets q_proj,v_proj) and
the merged export (base + (α/r)·B·A, saved in bf16). Written once to $FTDIAG_CACHE/bench-export
(~4.4 GB); check-export then runs in a subprocess so its peak RSS is its own.

    python benchmarks/bench_check_export.py
    python benchmarks/bench_check_export.py --targets q_proj,v_proj
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 4.0
RSS_TARGET_MB = 400
HIDDEN, INTER, LAYERS, HEADS, KV, VOCAB, RANK = 2048, 5632, 22, 32, 4, 32000, 16
HEAD_DIM = HIDDEN // HEADS
SHAPES = {  # module -> (out, in)
    "self_attn.q_proj": (HIDDEN, HIDDEN), "self_attn.k_proj": (KV * HEAD_DIM, HIDDEN),
    "self_attn.v_proj": (KV * HEAD_DIM, HIDDEN), "self_attn.o_proj": (HIDDEN, HIDDEN),
    "mlp.gate_proj": (INTER, HIDDEN), "mlp.up_proj": (INTER, HIDDEN),
    "mlp.down_proj": (HIDDEN, INTER),
}
CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
    "intermediate_size": INTER, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
    "num_key_value_heads": KV, "vocab_size": VOCAB, "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "rope_theta": 10000.0,
}


def base_tensors(gen: object) -> dict[str, object]:
    import torch

    t: dict[str, object] = {
        "model.embed_tokens.weight": torch.randn(VOCAB, HIDDEN, generator=gen) * 0.02,
        "lm_head.weight": torch.randn(VOCAB, HIDDEN, generator=gen) * 0.02,
        "model.norm.weight": torch.ones(HIDDEN)}
    for i in range(LAYERS):
        for mod, shape in SHAPES.items():
            t[f"model.layers.{i}.{mod}.weight"] = torch.randn(*shape, generator=gen) * 0.02
        t[f"model.layers.{i}.input_layernorm.weight"] = torch.ones(HIDDEN)
        t[f"model.layers.{i}.post_attention_layernorm.weight"] = torch.ones(HIDDEN)
    return {k: v.to(torch.bfloat16) for k, v in t.items()}  # type: ignore[attr-defined]


def synthesize(root: Path, targets: list[str]) -> tuple[Path, Path, Path]:
    """base/, adapter/ and merged/ under root (skipped when already there)."""
    import torch
    from safetensors.torch import save_file

    base, adapter, merged = root / "base", root / "adapter", root / "merged"
    if (merged / "model.safetensors").is_file():
        return base, adapter, merged
    for d in (base, adapter, merged):
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(CONFIG))
    gen = torch.Generator().manual_seed(0)
    weights = base_tensors(gen)
    save_file(weights, str(base / "model.safetensors"), metadata={"format": "pt"})
    lora, alpha = {}, 32
    for i in range(LAYERS):
        for mod, (out_f, in_f) in SHAPES.items():
            if mod.split(".")[-1] not in targets:
                continue
            a = torch.randn(RANK, in_f, generator=gen) / in_f**0.5
            b = torch.randn(out_f, RANK, generator=gen) * 2e-3
            key = f"model.layers.{i}.{mod}"
            lora[f"base_model.model.{key}.lora_A.weight"] = a
            lora[f"base_model.model.{key}.lora_B.weight"] = b
            w = weights[f"{key}.weight"].float()  # type: ignore[attr-defined]
            weights[f"{key}.weight"] = (w + (alpha / RANK) * (b @ a)).to(torch.bfloat16)
    save_file(lora, str(adapter / "adapter_model.safetensors"), metadata={"format": "pt"})
    (adapter / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": RANK, "lora_alpha": alpha,
        "target_modules": targets, "base_model_name_or_path": str(base)}))
    save_file(weights, str(merged / "model.safetensors"), metadata={"format": "pt"})
    return base, adapter, merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,"
                                              "down_proj")
    args = parser.parse_args()
    targets = args.targets.split(",")
    cache = Path(os.environ.get("FTDIAG_CACHE") or Path.home() / ".cache" / "ftdiag")
    root = cache / ("bench-export-" + "-".join(sorted(t.split("_")[0] for t in targets)))
    t0 = time.perf_counter()
    base, adapter, merged = synthesize(root, targets)
    print(f"fixture: {root} ({time.perf_counter() - t0:.1f} s to write or find)")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_abtest import cpu_model

    print(f"CPU: {cpu_model()}; load average {os.getloadavg()[0]:.1f}")
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "ftdiag", "check-export", str(merged),
                          "--adapter", str(adapter), "--base", str(base), "--json"],
                         capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if res.returncode not in (0, 1):
        sys.exit(f"check-export failed ({res.returncode}): {res.stderr.strip()}")
    doc = json.loads(res.stdout)
    totals = doc["details"]["totals"]
    print(f"check-export: {elapsed:.2f} s wall (target < {TARGET_S:.0f} s), peak RSS "
          f"{rss_mb:.0f} MB (target < {RSS_TARGET_MB} MB), {totals['modules']} modules "
          f"({totals['by_verdict']}), verdict "
          f"{doc['verdict']}, update lost to bf16 {totals['lost_share']:.1%}")
    print(f"ratio to target: {elapsed / TARGET_S:.2f}")


if __name__ == "__main__":
    main()
