"""check-export --modelfile: what an Ollama Modelfile serves, its TEMPLATE and stop (X005)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _export_fixtures import merge_to, write_lora_gguf
from typer.testing import CliRunner

from ftdiag.cli.app import app
from ftdiag.export.check import check_export
from ftdiag.export.modelfile import parse_modelfile, render_go
from ftdiag.prompts.template import DEFAULT_TEMPLATE, SYSTEM_PROMPT

runner = CliRunner()
TEMPLATE = '''TEMPLATE """[SYSTEM]
{{ .System }}
[USER]
Title: {{ .Prompt }}
[ASSISTANT]
"""'''
GOOD = f'FROM ./merged\n{TEMPLATE}\nSYSTEM "{SYSTEM_PROMPT}"\nPARAMETER stop "<|im_end|>"\n'


@pytest.fixture(scope="module")
def merged(tiny_llama: Path, trained_adapter: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Path:
    return merge_to(tiny_llama, trained_adapter, tmp_path_factory.mktemp("mf") / "merged")


def x005(export: Path, text: str, adapter: Path, base: Path):  # type: ignore[no-untyped-def]
    mf = export.parent / "Modelfile"
    mf.write_text(text)
    return next(c for c in check_export(export, adapter, str(base), mf).checks
                if c.code == "X005")


def test_matching_modelfile_passes(merged: Path, trained_adapter: Path,
                                   tiny_llama: Path) -> None:
    found = x005(merged, GOOD, trained_adapter, tiny_llama)
    assert found.status == "pass", found.message


@pytest.mark.parametrize(("text", "words"), [
    (GOOD.replace("FROM ./merged", "FROM smollm2:135m"), "no ADAPTER and FROM smollm2:135m"),
    (GOOD.replace(TEMPLATE, ""), "no TEMPLATE"),
    (GOOD.replace("Title: {{ .Prompt }}", "{{ .Prompt }}?"), "TEMPLATE renders"),
    (GOOD.replace('PARAMETER stop "<|im_end|>"', 'PARAMETER stop "</s>"'), "no PARAMETER stop"),
    (GOOD.replace("FROM ./merged", "FROM ./merged\nADAPTER ./lora.gguf"),
     "ADAPTER ./lora.gguf on top of the merged export applies the update twice"),
])
def test_modelfile_mismatch_is_x005(text: str, words: str, merged: Path, trained_adapter: Path,
                                    tiny_llama: Path) -> None:
    found = x005(merged, text, trained_adapter, tiny_llama)
    assert found.status == "warn" and words in found.message, found.message


def test_lora_gguf_needs_adapter_line(trained_adapter: Path, tiny_llama: Path,
                                      tmp_path: Path) -> None:
    lora = write_lora_gguf(trained_adapter, tiny_llama, tmp_path / "lora.gguf")
    with_adapter = GOOD.replace("FROM ./merged", f"FROM {tiny_llama}\nADAPTER ./lora.gguf")
    assert x005(lora, with_adapter, trained_adapter, tiny_llama).status == "pass"
    found = x005(lora, GOOD.replace("FROM ./merged", f"FROM {tiny_llama}"), trained_adapter,
                 tiny_llama)
    assert found.status == "warn" and "no ADAPTER" in found.message


def test_lora_gguf_adapter_line_must_name_the_checked_file(trained_adapter: Path,
                                                           tiny_llama: Path,
                                                           tmp_path: Path) -> None:
    lora = write_lora_gguf(trained_adapter, tiny_llama, tmp_path / "lora.gguf")
    write_lora_gguf(trained_adapter, tiny_llama, tmp_path / "older.gguf")  # a real other file
    text = GOOD.replace("FROM ./merged", f"FROM {tiny_llama}\nADAPTER ./older.gguf")
    found = x005(lora, text, trained_adapter, tiny_llama)
    assert found.status == "warn", found.message
    assert found.evidence["problems"] == ["ADAPTER ./older.gguf is not the checked lora.gguf"]


def test_parser_reads_blocks_quotes_and_comments(tmp_path: Path) -> None:
    mf = tmp_path / "Modelfile"
    mf.write_text('# comment\nfrom ./x.gguf\nPARAMETER temperature 0\nPARAMETER stop "a b"\n'
                  'PARAMETER stop <end>\nTEMPLATE """{{ if .System }}S:{{ .System }}\n'
                  '{{ end }}{{- .Prompt -}}\n"""\nSYSTEM hi\n')
    parsed = parse_modelfile(mf)
    assert parsed.from_ref == "./x.gguf" and parsed.stops == ["a b", "<end>"]
    assert parsed.system == "hi" and parsed.template is not None
    assert render_go(parsed.template, {"System": "", "Prompt": "p"}) == "p"
    assert render_go(parsed.template, {"System": "s", "Prompt": "p"}) == "S:s\np"
    assert render_go("{{ range .Messages }}{{ end }}", {}) is None
    assert DEFAULT_TEMPLATE.startswith("[SYSTEM]")


def test_missing_modelfile_is_exit_2(merged: Path, trained_adapter: Path, tiny_llama: Path,
                                     tmp_path: Path) -> None:
    res = runner.invoke(app, ["check-export", str(merged), "--adapter", str(trained_adapter),
                              "--base", str(tiny_llama), "--modelfile", str(tmp_path / "nope")])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
