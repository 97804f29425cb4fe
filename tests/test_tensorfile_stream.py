"""Stored-tensor reads for check-adapter's layer S: bit-level NaN/Inf checks, BF16 Grams."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ftdiag.adapters.files import read_adapter
from ftdiag.adapters.keys import group_lora_keys
from ftdiag.adapters.stats import compute_stats
from ftdiag.adapters.tensorfile import open_safetensors

PREFIX = "base_model.model.model.layers.0.self_attn.q_proj"


def _write(tmp_path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    save_file(tensors, str(tmp_path / "adapter_model.safetensors"))
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4, '
                                                  '"lora_alpha": 8}')
    return tmp_path


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None])
def test_finite_reads_the_bits_of_each_float_dtype(tmp_path: Path, dtype: torch.dtype,
                                                   bad: float | None) -> None:
    t = torch.randn(6, 40).to(dtype)
    t[0, 0] = -0.0
    t[1, 1] = torch.finfo(dtype).max  # the largest finite value is not Inf
    if bad is not None:
        t[5, 39] = bad
    save_file({"x": t, "i": torch.arange(5)}, str(tmp_path / "t.safetensors"))
    tf = open_safetensors(tmp_path / "t.safetensors")
    assert tf.finite("x") is (bad is None)
    assert tf.finite("i")
    tf.release("x")  # dropping the pages keeps the data readable
    with np.errstate(over="ignore"):  # float64's max is Inf in float32
        assert np.array_equal(next(tf.read(["x"]))[1], t.float().numpy(), equal_nan=True)


def test_bf16_stats_match_float64_reference(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    a = (torch.randn(4, 300, generator=gen) / 17).to(torch.bfloat16)
    b = (torch.randn(500, 4, generator=gen) * 1e-3).to(torch.bfloat16)
    files = read_adapter(_write(tmp_path, {f"{PREFIX}.lora_A.weight": a,
                                           f"{PREFIX}.lora_B.weight": b}))
    modules, _ = group_lora_keys(list(files.shapes))
    (stat,), bad = compute_stats(files, modules, files.config or {})
    a64, b64 = a.double().numpy(), b.double().numpy()
    assert bad == [] and stat.finite and not stat.b_zero and stat.dtype == "BF16"
    assert stat.a_norm == pytest.approx(np.linalg.norm(a64), rel=1e-6)
    assert stat.b_norm == pytest.approx(np.linalg.norm(b64), rel=1e-6)
    assert stat.delta_norm == pytest.approx(2 * np.linalg.norm(b64 @ a64), rel=1e-5)


def test_huge_finite_values_are_not_nonfinite(tmp_path: Path) -> None:
    """Squares of |x| > 2e19 overflow float32: the Gram shortcut must not call that NaN/Inf."""
    a = torch.full((4, 8), 1e30).to(torch.bfloat16)
    b = torch.zeros(16, 4, dtype=torch.bfloat16)
    b[3, 1] = 1e-30  # its square underflows to 0: B is still not zero
    files = read_adapter(_write(tmp_path, {f"{PREFIX}.lora_A.weight": a,
                                           f"{PREFIX}.lora_B.weight": b}))
    modules, _ = group_lora_keys(list(files.shapes))
    (stat,), bad = compute_stats(files, modules, files.config or {})
    assert bad == [] and stat.finite
    a64, b64 = a.double().numpy(), b.double().numpy()
    assert stat.a_norm == pytest.approx(np.linalg.norm(a64), rel=1e-6)
    assert stat.delta_norm == pytest.approx(2 * np.linalg.norm(b64 @ a64), rel=1e-6)
    assert not stat.b_zero


def test_nonfinite_keys_come_in_file_order_and_cover_extra_tensors(tmp_path: Path) -> None:
    a, b = torch.randn(4, 8), torch.randn(16, 4)
    b[2, 2] = math.nan
    embed = torch.zeros(10, 8)
    embed[9, 7] = math.inf
    files = read_adapter(_write(tmp_path, {
        f"{PREFIX}.lora_A.weight": a, f"{PREFIX}.lora_B.weight": b,
        "base_model.model.model.embed_tokens.weight": embed}))
    modules, _ = group_lora_keys(list(files.shapes))
    (stat,), bad = compute_stats(files, modules, files.config or {})
    assert bad == [k for k in files.shapes if k != f"{PREFIX}.lora_A.weight"]
    assert not stat.finite and math.isnan(stat.delta_norm) and not stat.b_zero
