"""`ftdiag train --dtype`: fp32 weights and optimizer state always on CPU; bf16 autocast only
where the probe finds bf16 matmuls >= 1.5x fp32's speed (or when asked)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from _train_helpers import toy_records, write_jsonl
from safetensors.torch import load_file
from transformers import TrainerCallback

from ftdiag.errors import FtdiagError
from ftdiag.training.precision import TRAIN_BF16_MAX_RATIO, train_precision
from ftdiag.training.recipe import TrainConfig, train


def _probe(fp32_ms: float, bf16_ms: float) -> Any:
    return lambda: {"fp32": fp32_ms, "bf16": bf16_ms}


def test_auto_takes_bf16_autocast_only_at_one_and_a_half_times_fp32() -> None:
    fast = train_precision("auto", "cpu", _probe(1.0, 0.5))
    assert fast.autocast_bf16 and fast.weights == torch.float32
    assert fast.label == "bf16 autocast (fp32 weights)"
    edge = train_precision("auto", "cpu", _probe(1.0, TRAIN_BF16_MAX_RATIO))
    assert edge.autocast_bf16
    slight = train_precision("auto", "cpu", _probe(1.0, 0.8))  # native, but only 1.25x
    assert not slight.autocast_bf16 and slight.label == "float32"
    assert "not fast enough" in slight.choice.reason and "0.67x" in slight.choice.reason
    emulated = train_precision("auto", "cpu", _probe(0.33, 11.0))
    assert not emulated.autocast_bf16 and "no native bf16" in emulated.choice.reason


def test_asked_for_dtypes_and_fp16_on_cpu() -> None:
    assert train_precision("bf16", "cpu").autocast_bf16
    assert not train_precision("fp32", "cpu").autocast_bf16
    with pytest.raises(FtdiagError, match="fp16 trains only on CUDA"):
        train_precision("fp16", "cpu")
    with pytest.raises(FtdiagError, match="unknown --dtype"):
        train_precision("int8", "cpu")


class _MatmulDtypes(TrainerCallback):
    """Records the dtype of one LoRA layer's base-matmul output during training steps."""

    def __init__(self) -> None:
        self.seen: set[torch.dtype] = set()

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       **kw: Any) -> None:
        layer = next(m for n, m in model.named_modules() if n.endswith("q_proj.base_layer"))
        layer.register_forward_hook(lambda _m, _i, out: self.seen.add(out.dtype))


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_a_run_computes_in_the_dtype_it_records(dtype: str, tiny_llama: Path,
                                                tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "trn.json", toy_records(16))
    probe = _MatmulDtypes()
    result = train(TrainConfig(data=data, out=tmp_path / "run", base=str(tiny_llama),
                               max_steps=2, batch_size=4, eval_share=0.2, lora_r=4,
                               target_modules=["q_proj", "v_proj"], dtype=dtype),
                   callbacks=[probe])
    bf16 = dtype == "bf16"
    assert probe.seen == ({torch.bfloat16} if bf16 else {torch.float32})
    meta = json.loads((result.out_dir / "ftdiag_meta.json").read_text())
    assert meta["dtype"] == "float32"  # the weights: fp32 either way
    assert meta["precision"]["compute"] == ("bf16 autocast (fp32 weights)" if bf16 else "float32")
    assert meta["precision"]["reason"] == f"asked for (--dtype {dtype})"
    assert result.precision == meta["precision"]["compute"]
    saved = load_file(str(result.out_dir / "adapter_model.safetensors"))
    assert {t.dtype for t in saved.values()} == {torch.float32}  # LoRA weights stay fp32
    assert all(torch.isfinite(t).all() for t in saved.values())
    assert result.steps == 2 and result.first_loss == result.first_loss  # not NaN
