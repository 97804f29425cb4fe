"""check-export on merged GGUF files: llama.cpp names, q/k permutation, quantized weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _export_fixtures import llama_cpp_permute, merge_to, status, write_merged_gguf

from ftdiag.export.check import check_export
from ftdiag.export.weights import permute, unpermute

# llama.cpp's permute (conversion/llama.py) worked by hand on the row indices: each head's rows
# are two rotary halves [h0 | h1], written interleaved as h0[0], h1[0], h0[1], h1[1], ...
KNOWN = [
    (8, 1, [0, 4, 1, 5, 2, 6, 3, 7]),
    (8, 2, [0, 2, 1, 3, 4, 6, 5, 7]),
    (16, 2, [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]),
]


@pytest.mark.parametrize(("rows", "heads", "order"), KNOWN)
def test_qk_permutation_is_llama_cpps(rows: int, heads: int, order: list[int]) -> None:
    assert llama_cpp_permute(np.arange(rows), heads).tolist() == order  # the fixtures' copy
    assert permute(np.arange(rows), heads).tolist() == order
    w = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)  # rows carry their columns
    assert (permute(w, heads) == w[order]).all()
    assert (unpermute(w[order], heads) == w).all()


@pytest.fixture(scope="module")
def merged(tiny_llama: Path, trained_adapter: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Path:
    return merge_to(tiny_llama, trained_adapter, tmp_path_factory.mktemp("m") / "merged")


@pytest.mark.parametrize("qtype", ["F32", "F16", "Q8_0"])
def test_merged_gguf_passes(qtype: str, merged: Path, tiny_llama: Path,
                            trained_adapter: Path, tmp_path: Path) -> None:
    gguf_file = write_merged_gguf(merged, tmp_path / f"merged-{qtype}.gguf", qtype)
    report = check_export(gguf_file, trained_adapter, str(tiny_llama))
    assert report.details.kind == "merged-gguf"  # type: ignore[attr-defined]
    assert {status(report, c) for c in ("X001", "X002")} == {"pass"}, report.to_dict()["checks"]


@pytest.mark.parametrize("qtype", ["F32", "Q8_0"])
def test_base_converted_to_gguf_is_x001(qtype: str, tiny_llama: Path, trained_adapter: Path,
                                        tmp_path: Path) -> None:
    gguf_file = write_merged_gguf(tiny_llama, tmp_path / f"base-{qtype}.gguf", qtype)
    assert status(check_export(gguf_file, trained_adapter, str(tiny_llama)), "X001") == "fail"


def test_q4_quantization_loses_the_update_x003(merged: Path, tiny_llama: Path,
                                               trained_adapter: Path, tmp_path: Path) -> None:
    q4 = write_merged_gguf(merged, tmp_path / "q4.gguf", "Q4_0")
    f32 = write_merged_gguf(merged, tmp_path / "f32.gguf", "F32")
    lost = [check_export(f, trained_adapter, str(tiny_llama)).details.totals.lost_share  # type: ignore[attr-defined]
            for f in (q4, f32)]
    assert lost[0] > 0.1 > lost[1]


def test_truncated_gguf_is_one_line_exit_2(merged: Path, tiny_llama: Path,
                                           trained_adapter: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ftdiag.cli.app import app

    f = write_merged_gguf(merged, tmp_path / "cut.gguf", "F32")
    f.write_bytes(f.read_bytes()[: f.stat().st_size * 2 // 3])
    res = CliRunner().invoke(app, ["check-export", str(f), "--adapter", str(trained_adapter),
                                   "--base", str(tiny_llama)])
    assert res.exit_code == 2 and "Traceback" not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
