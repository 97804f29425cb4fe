"""Time `ftdiag check-adapter --static-only` on a synthetic 7B-layout LoRA adapter (target < 2 s).

The adapter is what a real PEFT save holds (32 layers x 7 targets, r=16, bf16, ~80 MB); the base
folder has only Llama-2-7B's config.json, so the module tree is built on the meta device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 2.0
HIDDEN, INTER, LAYERS, RANK = 4096, 11008, 32, 16
SHAPES = {  # module -> (out, in)
    "self_attn.q_proj": (HIDDEN, HIDDEN), "self_attn.k_proj": (HIDDEN, HIDDEN),
    "self_attn.v_proj": (HIDDEN, HIDDEN), "self_attn.o_proj": (HIDDEN, HIDDEN),
    "mlp.gate_proj": (INTER, HIDDEN), "mlp.up_proj": (INTER, HIDDEN),
    "mlp.down_proj": (HIDDEN, INTER),
}
LLAMA2_7B = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
    "intermediate_size": INTER, "num_hidden_layers": LAYERS, "num_attention_heads": 32,
    "num_key_value_heads": 32, "vocab_size": 32000, "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2,
    "tie_word_embeddings": False, "torch_dtype": "float16", "rope_theta": 10000.0,
}


def synthesize(root: Path) -> tuple[Path, Path]:
    """Write base/config.json and adapter/{adapter_config.json, adapter_model.safetensors}."""
    import torch
    from safetensors.torch import save_file

    base, adapter = root / "llama-2-7b", root / "adapter"
    base.mkdir()
    adapter.mkdir()
    (base / "config.json").write_text(json.dumps(LLAMA2_7B))
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for layer in range(LAYERS):
        for mod, (out_f, in_f) in SHAPES.items():
            key = f"base_model.model.model.layers.{layer}.{mod}"
            tensors[f"{key}.lora_A.weight"] = (
                torch.randn(RANK, in_f, generator=gen) / in_f**0.5).to(torch.bfloat16)
            tensors[f"{key}.lora_B.weight"] = (
                torch.randn(out_f, RANK, generator=gen) * 1e-3).to(torch.bfloat16)
    save_file(tensors, str(adapter / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": RANK, "lora_alpha": 32,
        "lora_dropout": 0.05, "target_modules": [m.split(".")[-1] for m in SHAPES],
        "base_model_name_or_path": "meta-llama/Llama-2-7b-hf", "bias": "none",
        "fan_in_fan_out": False, "use_rslora": False, "rank_pattern": {}, "alpha_pattern": {},
    }
    (adapter / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return base, adapter


def main() -> None:
    from ftdiag.adapters import check_adapter

    with tempfile.TemporaryDirectory() as tmp:
        base, adapter = synthesize(Path(tmp))
        size_mb = (adapter / "adapter_model.safetensors").stat().st_size / 1e6
        cli = Path(sys.executable).with_name("ftdiag")
        cmd = [str(cli), "check-adapter", str(adapter), "--base", str(base), "--static-only",
               "--json"]
        env = {**os.environ, "FTDIAG_CACHE": str(Path(tmp) / "cache")}
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            runs.append(time.perf_counter() - t0)
        doc = json.loads(proc.stdout)
        t0 = time.perf_counter()
        report = check_adapter(adapter, base, static_only=True)
        lib_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = check_adapter(adapter, base, static_only=True)
        lib_warm_s = time.perf_counter() - t0
    cli_s = min(runs)
    print(f"adapter: {LAYERS} layers x {len(SHAPES)} targets, r={RANK}, bf16, {size_mb:.1f} MB; "
          f"base: config.json only (Llama-2-7B)")
    print(f"verdict {doc['verdict']} (exit {proc.returncode}); findings "
          f"{sorted(f['code'] for f in doc['findings'])}; adapted "
          f"{doc['details']['static']['adapted_modules']}/"
          f"{doc['details']['static']['expected_modules']} modules")
    print(f"CLI end to end (subprocess, best of 3): {cli_s:.2f} s  "
          f"ratio to {TARGET_S:.0f} s target: {cli_s / TARGET_S:.2f}  "
          f"(runs: {', '.join(f'{r:.2f}' for r in runs)})")
    print(f"library call, first in process: {lib_s:.2f} s (ratio {lib_s / TARGET_S:.2f}); "
          f"warm: {lib_warm_s:.2f} s (ratio {lib_warm_s / TARGET_S:.2f})")
    assert report.verdict == doc["verdict"]
    if cli_s >= TARGET_S:
        print("SLOWER THAN TARGET", file=sys.stderr)


if __name__ == "__main__":
    main()
