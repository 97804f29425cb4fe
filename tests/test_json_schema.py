"""Each command's `--json` keeps its keys: its key structure against a checked-in example.

The examples in tests/schemas/ were written by the code before the structure refactor (issue 9).
Regenerate one only when a key change is intended: `FTDIAG_WRITE_SCHEMAS=1 pytest this file`.
Values are not compared (they depend on random tiny models); `evidence` is free-form per finding.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from _ab_helpers import write_titles
from _loss_helpers import write_run
from _train_helpers import toy_records, write_jsonl
from typer.testing import CliRunner

from ftdiag.cli.app import app
from ftdiag.testing import tiny

SCHEMAS = Path(__file__).parent / "schemas"
OPAQUE = {"evidence"}
runner = CliRunner()


def shape(value: Any) -> Any:
    """Keys all the way down; a list is the union of its elements' shapes; leaves are '*'."""
    if isinstance(value, dict):
        return {k: "{...}" if k in OPAQUE else shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        merged: Any = None
        for item in value:
            merged = _union(merged, shape(item))
        return [merged] if merged is not None else []
    return "*"


def _union(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return b if a is None else a
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _union(a.get(k), b.get(k)) for k in sorted(set(a) | set(b))}
    if isinstance(a, list) and isinstance(b, list):
        return [_union(a[0] if a else None, b[0] if b else None)] if a or b else []
    return a if a != "*" else b


def _json(args: list[str]) -> dict[str, Any]:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code in (0, 1), res.output
    return json.loads(res.stdout)


def _pin(name: str, doc: dict[str, Any]) -> None:
    path = SCHEMAS / f"{name}.json"
    if os.environ.get("FTDIAG_WRITE_SCHEMAS"):
        SCHEMAS.mkdir(exist_ok=True)
        path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert shape(doc) == shape(expected), f"--json keys of {name} changed"


def test_check_adapter_json_keys(trained_adapter: Path, tiny_llama: Path) -> None:
    _pin("check-adapter", _json(["check-adapter", str(trained_adapter), "--base",
                                 str(tiny_llama)]))


def test_check_adapter_static_only_json_keys(trained_adapter: Path, tiny_llama: Path) -> None:
    _pin("check-adapter-static", _json(["check-adapter", str(trained_adapter), "--base",
                                        str(tiny_llama), "--static-only"]))


def test_ab_test_json_keys(trained_adapter: Path, tiny_llama: Path, tmp_path: Path) -> None:
    from ftdiag.export.merge import merge_adapter

    merged = tmp_path / "merged"
    merge_adapter(trained_adapter, str(tiny_llama), merged)
    titles = write_titles(tmp_path / "t.jsonl")
    _pin("ab-test", _json(["ab-test", "--adapter", str(trained_adapter), "--base",
                           str(tiny_llama), "--titles", str(titles), "--merged", str(merged),
                           "--max-new-tokens", "6", "--check-batch"]))


def test_loss_report_json_keys(tmp_path: Path) -> None:
    _pin("loss-report", _json(["loss-report", str(write_run(tmp_path / "a"))]))
    _pin("loss-report-compare", _json(["loss-report", str(write_run(tmp_path / "b")),
                                       str(write_run(tmp_path / "c", "flat"))]))


def test_merge_json_keys(trained_adapter: Path, tiny_llama: Path, tmp_path: Path) -> None:
    _pin("merge", _json(["merge", "--adapter", str(trained_adapter), "--base", str(tiny_llama),
                         "--out", str(tmp_path / "m")]))


def test_train_json_keys(tiny_llama: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "trn.json", toy_records(30))
    _pin("train", _json(["train", "--data", str(data), "--base", str(tiny_llama), "--out",
                         str(tmp_path / "run"), "--max-steps", "2", "--max-length", "96"]))


def _run_dir(tmp_path: Path, tiny_llama: Path) -> Path:
    run = tiny.train_toy_adapter(tiny_llama, tmp_path / "run", steps=10)
    write_run(run)
    (run / "ftdiag_meta.json").write_text(json.dumps({"base": str(tiny_llama)}))
    write_titles(run / "train_examples.jsonl")
    return run


def test_doctor_json_keys(tiny_llama: Path, tmp_path: Path) -> None:
    run = _run_dir(tmp_path, tiny_llama)
    _pin("doctor", _json(["doctor", str(run), "--n", "2", "--max-new-tokens", "4"]))


def test_doctor_static_failure_json_keys(tiny_llama: Path, tmp_path: Path) -> None:
    run = _run_dir(tmp_path, tiny_llama)
    (run / "adapter_model.safetensors").write_bytes(b"")
    _pin("doctor-static-fail", _json(["doctor", str(run)]))


@pytest.mark.parametrize("other", [{"y": 1}, "*"])
def test_shape_sees_a_renamed_key(other: object) -> None:
    assert shape({"a": {"b": 1}}) != shape({"a": {"c": 1}})
    assert shape([{"a": 1}, {"b": 2}]) == shape([{"a": 1, "b": 2}])
    assert shape({"evidence": {"x": 1}}) == shape({"evidence": other})


def test_check_export_json_keys(trained_adapter: Path, tiny_llama: Path, tmp_path: Path) -> None:
    from _export_fixtures import merge_to

    merged = merge_to(tiny_llama, trained_adapter, tmp_path / "merged")
    (tmp_path / "Modelfile").write_text("FROM ./merged\n")
    _pin("check-export", _json(["check-export", str(merged), "--adapter", str(trained_adapter),
                                "--base", str(tiny_llama), "--modelfile",
                                str(tmp_path / "Modelfile")]))


def test_check_export_lora_gguf_json_keys(trained_adapter: Path, tiny_llama: Path,
                                          tmp_path: Path) -> None:
    from _export_fixtures import write_lora_gguf

    lora = write_lora_gguf(trained_adapter, tiny_llama, tmp_path / "lora.gguf")
    _pin("check-export-lora-gguf", _json(["check-export", str(lora), "--adapter",
                                          str(trained_adapter), "--base", str(tiny_llama)]))
