"""Time `ftdiag check-adapter --static-only` on a synthetic 7B-layout LoRA adapter (target < 2 s).

The adapter is what a real PEFT save holds (32 layers x 7 targets, r=16, bf16, ~80 MB); the base
folder has only Llama-2-7B's config.json, so the module tree comes from the config alone.
`bench_static_70b.py` runs the same measurement on a Llama-2-70B layout (~0.4 GB).
Each CLI run is its own process; its peak RSS comes from getrusage in a small launcher process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RANK = 16


@dataclass(frozen=True)
class Layout:
    """A Llama-2 size: its config.json and the CLI targets (seconds, MB of peak RSS or None)."""

    name: str
    hidden: int
    inter: int
    layers: int
    heads: int
    kv_heads: int
    target_s: float
    target_rss_mb: float | None = None

    def shapes(self) -> dict[str, tuple[int, int]]:
        """module -> (out, in) of the 7 LoRA targets."""
        h, kv = self.hidden, self.hidden // self.heads * self.kv_heads
        return {"self_attn.q_proj": (h, h), "self_attn.k_proj": (kv, h),
                "self_attn.v_proj": (kv, h), "self_attn.o_proj": (h, h),
                "mlp.gate_proj": (self.inter, h), "mlp.up_proj": (self.inter, h),
                "mlp.down_proj": (h, self.inter)}

    def config(self) -> dict[str, Any]:
        return {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "hidden_size": self.hidden, "intermediate_size": self.inter,
            "num_hidden_layers": self.layers, "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads, "vocab_size": 32000,
            "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "hidden_act": "silu",
            "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False,
            "torch_dtype": "float16", "rope_theta": 10000.0,
        }


LLAMA2_7B = Layout("Llama-2-7B", 4096, 11008, 32, 32, 32, target_s=2.0)
LLAMA2_70B = Layout("Llama-2-70B", 8192, 28672, 80, 64, 8, target_s=1.5, target_rss_mb=800)


def synthesize(root: Path, layout: Layout = LLAMA2_7B) -> tuple[Path, Path]:
    """Write base/config.json and adapter/{adapter_config.json, adapter_model.safetensors}."""
    import torch
    from safetensors.torch import save_file

    base, adapter = root / layout.name.lower(), root / "adapter"
    base.mkdir()
    adapter.mkdir()
    (base / "config.json").write_text(json.dumps(layout.config()))
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for layer in range(layout.layers):
        for mod, (out_f, in_f) in layout.shapes().items():
            key = f"base_model.model.model.layers.{layer}.{mod}"
            tensors[f"{key}.lora_A.weight"] = (
                torch.randn(RANK, in_f, generator=gen) / in_f**0.5).to(torch.bfloat16)
            tensors[f"{key}.lora_B.weight"] = (
                torch.randn(out_f, RANK, generator=gen) * 1e-3).to(torch.bfloat16)
    save_file(tensors, str(adapter / "adapter_model.safetensors"), metadata={"format": "pt"})
    del tensors
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": RANK, "lora_alpha": 32,
        "lora_dropout": 0.05, "target_modules": [m.split(".")[-1] for m in layout.shapes()],
        "base_model_name_or_path": f"meta-llama/{layout.name}-hf", "bias": "none",
        "fan_in_fan_out": False, "use_rslora": False, "rank_pattern": {}, "alpha_pattern": {},
    }
    (adapter / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return base, adapter


# A small launcher process times one CLI run and reads its peak RSS: a child forked from this
# (big, torch-importing) process would carry this process's RSS into its high-water mark.
LAUNCHER = """
import json, os, resource, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True, check=False)
dt = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"s": dt, "rss_mb": rss, "code": proc.returncode, "stdout": proc.stdout}))
"""


def run_cli(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """(seconds, peak RSS in MB, exit code, stdout) of one CLI process."""
    out = subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], capture_output=True,
                         text=True, env=env, check=True)
    doc = json.loads(out.stdout)
    return doc["s"], doc["rss_mb"], doc["code"], doc["stdout"]


def run(layout: Layout, repeats: int = 3) -> None:
    """Synthesize `layout`, time the CLI `repeats` times and the library call twice; print."""
    from ftdiag.adapters.check import check_adapter

    with tempfile.TemporaryDirectory() as tmp:
        base, adapter = synthesize(Path(tmp), layout)
        size_mb = (adapter / "adapter_model.safetensors").stat().st_size / 1e6
        cli = Path(sys.executable).with_name("ftdiag")
        cmd = [str(cli), "check-adapter", str(adapter), "--base", str(base), "--static-only",
               "--json"]
        env = {**os.environ, "FTDIAG_CACHE": str(Path(tmp) / "cache")}
        runs = [run_cli(cmd, env) for _ in range(repeats)]
        _, _, code, stdout = runs[-1]
        doc = json.loads(stdout)
        t0 = time.perf_counter()
        report = check_adapter(adapter, base, static_only=True)
        lib_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = check_adapter(adapter, base, static_only=True)
        lib_warm_s = time.perf_counter() - t0
    cli_s, rss = min(r[0] for r in runs), max(r[1] for r in runs)
    print(f"adapter: {layout.layers} layers x 7 targets, r={RANK}, bf16, {size_mb:.1f} MB; "
          f"base: config.json only ({layout.name}); load average {os.getloadavg()[0]:.2f}")
    print(f"verdict {doc['verdict']} (exit {code}); findings "
          f"{sorted(f['code'] for f in doc['findings'])}; adapted "
          f"{doc['details']['static']['adapted_modules']}/"
          f"{doc['details']['static']['expected_modules']} modules")
    print(f"CLI end to end (subprocess, best of {repeats}): {cli_s:.2f} s  "
          f"ratio to {layout.target_s:g} s target: {cli_s / layout.target_s:.2f}  "
          f"(runs: {', '.join(f'{r[0]:.2f}' for r in runs)})")
    rss_line = f"CLI peak RSS (getrusage, max of {repeats}): {rss:.0f} MB"
    if layout.target_rss_mb:
        rss_line += (f"  ratio to {layout.target_rss_mb:g} MB target: "
                     f"{rss / layout.target_rss_mb:.2f}")
    print(rss_line)
    print(f"library call, first in process: {lib_s:.2f} s (ratio {lib_s / layout.target_s:.2f});"
          f" warm: {lib_warm_s:.2f} s (ratio {lib_warm_s / layout.target_s:.2f})")
    assert report.verdict == doc["verdict"]
    if cli_s >= layout.target_s or (layout.target_rss_mb and rss >= layout.target_rss_mb):
        print("MISSES A TARGET", file=sys.stderr)


def main() -> None:
    run(LLAMA2_7B)


if __name__ == "__main__":
    main()
