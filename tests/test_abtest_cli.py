"""`ftdiag ab-test` end to end on tiny models: outputs, report files, exit codes, bad input."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from html import escape
from pathlib import Path

import pytest
from _ab_helpers import TITLES, two_adapter_folder, write_titles, zero_adapter  # noqa: F401
from typer.testing import CliRunner

from ftdiag.cli.app import app

runner = CliRunner()


def ab(*args: str | Path) -> tuple[int, str, str]:
    res = runner.invoke(app, ["ab-test", *map(str, args)])
    return res.exit_code, res.stdout, res.stderr


def test_json_output(tiny_llama: Path, trained_adapter: Path, tmp_path: Path) -> None:
    titles = write_titles(tmp_path / "t.jsonl")
    code, out, _ = ab("--adapter", trained_adapter, "--base", tiny_llama, "--titles", titles,
                      "--max-new-tokens", "6", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["command"] == "ab-test"
    assert [r["title"] for r in doc["details"]["rows"]] == TITLES
    assert doc["details"]["summary"]["identical"] == 0
    assert "ref_nll" in doc["details"]["summary"]


def test_rich_output_shows_both_arms_and_summary(tiny_llama: Path, trained_adapter: Path,
                                                 tmp_path: Path) -> None:
    titles = write_titles(tmp_path / "t.txt")
    code, out, _ = ab("--adapter", trained_adapter, "--base", tiny_llama, "--titles", titles,
                      "--max-new-tokens", "6")
    assert code == 0
    for text in ("Steel bottle", "base (", "adapter (", "summary", "identical base/adapter: 0/4",
                 "verdict:", "generation: do_sample=False"):
        assert text in out, text


def test_every_report_format_parses_back(tiny_llama: Path, trained_adapter: Path,
                                         tmp_path: Path) -> None:
    titles = tmp_path / "t.jsonl"
    rows = [{"title": t, "content": "ref"} for t in [*TITLES, "<b>Tom & Jerry's</b> mug"]]
    titles.write_text("".join(json.dumps(r) + "\n" for r in rows))
    md, html, xml = tmp_path / "r.md", tmp_path / "out" / "r.html", tmp_path / "r.xml"
    code, _, _ = ab("--adapter", trained_adapter, "--base", tiny_llama, "--titles", titles,
                    "--max-new-tokens", "6", "--markdown", md, "--html", html, "--junit", xml)
    assert code == 0
    suites = ET.parse(xml).getroot()
    titles_suite = suites.find("testsuite[@name='ftdiag.ab-test.titles']")
    assert titles_suite is not None and len(titles_suite.findall("testcase")) == 5
    assert titles_suite.get("failures") == "0"
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert escape("<b>Tom & Jerry's</b> mug") in page and "<b>Tom" not in page
    for t in TITLES:
        assert escape(t) in page
    text = md.read_text()
    assert "| metric | base | adapter |" in text and "| mean new tokens |" in text
    assert "Identical base/adapter outputs: **0/5**" in text


def test_zero_b_adapter_exits_1_with_failing_junit(tiny_llama: Path, zero_adapter: Path,  # noqa: F811
                                                    tmp_path: Path) -> None:
    titles = write_titles(tmp_path / "t.txt")
    xml = tmp_path / "r.xml"
    code, out, _ = ab("--adapter", zero_adapter, "--base", tiny_llama, "--titles", titles,
                      "--max-new-tokens", "6", "--json", "--junit", xml)
    assert code == 1
    assert "B001" in {f["code"] for f in json.loads(out)["findings"]}
    suite = ET.parse(xml).getroot().find("testsuite[@name='ftdiag.ab-test.titles']")
    assert suite is not None and suite.get("failures") == str(len(TITLES))
    assert all(c.find("failure") is not None for c in suite.findall("testcase"))


def test_from_train_samples_n_titles(tiny_llama: Path, trained_adapter: Path,
                                     tmp_path: Path) -> None:
    data = write_titles(tmp_path / "trn.json")
    code, out, _ = ab("--adapter", trained_adapter, "--base", tiny_llama, "--from-train", data,
                      "--n", "2", "--seed", "3", "--max-new-tokens", "4", "--json")
    assert code == 0 and json.loads(out)["details"]["summary"]["n"] == 2


def test_static_failure_stops_before_loading(tiny_llama: Path, tmp_path: Path) -> None:
    broken = tmp_path / "adapter"
    broken.mkdir()
    (broken / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    code, out, _ = ab("--adapter", broken, "--base", tiny_llama, "--titles",
                      write_titles(tmp_path / "t.txt"), "--json")
    doc = json.loads(out)
    assert code == 1 and "A001" in {f["code"] for f in doc["findings"]}
    assert doc["layers"]["skipped"]["G"] == "static layer failed"


def _bad_inputs(tmp: Path, adapter: Path, base: Path) -> dict[str, list[str | Path]]:
    (tmp / "empty.txt").write_text("")
    (tmp / "blank.txt").write_text("\n  \n")
    (tmp / "latin1.txt").write_bytes("caf\xe9 mug\n".encode("latin-1"))
    write_titles(tmp / "t.jsonl")
    common: list[str | Path] = ["--adapter", adapter, "--base", base]
    return {
        "empty": [*common, "--titles", tmp / "empty.txt"],
        "blank": [*common, "--titles", tmp / "blank.txt"],
        "latin1": [*common, "--titles", tmp / "latin1.txt"],
        "field": [*common, "--titles", tmp / "t.jsonl", "--title-field", "nope"],
        "no-titles": common,
        "both": [*common, "--titles", tmp / "t.jsonl", "--from-train", tmp / "t.jsonl"],
        "no-base": ["--adapter", adapter, "--base", tmp / "nope", "--titles", tmp / "t.jsonl"],
        "no-adapter": ["--adapter", tmp / "nope", "--base", base, "--titles", tmp / "t.jsonl"],
    }


@pytest.mark.parametrize("case", ["empty", "blank", "latin1", "field", "no-titles", "both",
                                  "no-base", "no-adapter"])
def test_bad_input_exits_2_with_one_line(case: str, tiny_llama: Path, trained_adapter: Path,
                                         tmp_path: Path) -> None:
    code, out, err = ab(*_bad_inputs(tmp_path, trained_adapter, tiny_llama)[case])
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip().startswith("error:")]
    assert len(lines) == 1, err


def test_a_folder_with_more_adapters_says_which_one_ran(tiny_llama: Path, trained_adapter: Path,
                                                        tmp_path: Path) -> None:
    folder = two_adapter_folder(trained_adapter, tmp_path / "two")
    titles = write_titles(tmp_path / "t.txt")
    args = ("--base", tiny_llama, "--titles", titles, "--max-new-tokens", "4")
    code, out, _ = ab("--adapter", folder, *args, "--json")
    warnings = json.loads(out)["details"]["summary"]["warnings"]
    assert code == 0 and len(warnings) == 1
    assert "2 adapters ('default', 'other')" in warnings[0]
    assert f"--adapter {folder / 'other'}" in warnings[0]
    code, out, _ = ab("--adapter", folder, *args)
    assert "warning: " in out and "this run uses 'default'" in " ".join(out.split())
    code, out, _ = ab("--adapter", folder / "other", *args, "--json")
    assert code == 0 and json.loads(out)["details"]["summary"]["warnings"] == []
