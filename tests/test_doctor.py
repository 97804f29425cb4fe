"""doctor on a healthy and on a broken run: criteria, ranked causes, reports, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftdiag.cli.app import app
from ftdiag.doctor.run import run_doctor
from ftdiag.testing import tiny


def _trainer_state(losses: list[float], eval_losses: list[float]) -> dict:
    history = [{"step": (i + 1) * 5, "loss": v, "learning_rate": 1e-3, "epoch": (i + 1) / 10,
                "grad_norm": 1.0} for i, v in enumerate(losses)]
    history += [{"step": (i + 1) * 20, "eval_loss": v, "epoch": (i + 1) / 2}
                for i, v in enumerate(eval_losses)]
    return {"log_history": history, "global_step": len(losses) * 5, "max_steps": len(losses) * 5}


def _titles(path: Path) -> Path:
    rows = [{"title": t.split("Title: ")[1].split("\n")[0], "content": t.split("[ASSISTANT]\n")[1]}
            for t in tiny.TOY_TEXTS]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def healthy_run(tmp_path: Path, tiny_llama: Path) -> Path:
    run = tiny.train_toy_adapter(tiny_llama, tmp_path / "run", steps=100, lr=2e-2, r=8, alpha=16)
    decreasing = [3.0 * 0.97**i for i in range(60)]
    (run / "trainer_state.json").write_text(json.dumps(_trainer_state(decreasing, [2.5, 2.0, 1.8])))
    (run / "ftdiag_meta.json").write_text(json.dumps({"base": str(tiny_llama)}))
    _titles(run / "train_examples.jsonl")
    return run


@pytest.fixture()
def broken_run(tmp_path: Path, tiny_llama: Path) -> Path:
    """A zero-B adapter (saved before training) with a flat loss log."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    run = tmp_path / "broken"
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama))
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(str(run))
    flat = [3.0 + 0.01 * (i % 3) for i in range(60)]
    (run / "trainer_state.json").write_text(json.dumps(_trainer_state(flat, [3.0, 3.01])))
    (run / "ftdiag_meta.json").write_text(json.dumps({"base": str(tiny_llama)}))
    _titles(run / "train_examples.jsonl")
    return run


def test_healthy_run_meets_the_success_criteria(healthy_run: Path) -> None:
    result = run_doctor(healthy_run, n=4, max_new_tokens=12)
    assert [c.ok for c in result.criteria] == [True, True, True, True], result.criteria
    assert result.criteria[3].evidence == "loss 2.780 → 0.537 (81% decrease)"  # not "+81%"
    assert result.report.verdict != "fail"
    assert not [c for c in result.causes if c.severity == "fail"]
    assert set(result.report.layers_run) >= {"L", "S", "R", "G"}


def test_broken_run_names_untrained_adapter_and_flat_loss_first(broken_run: Path) -> None:
    result = run_doctor(broken_run, n=4, max_new_tokens=8)
    assert result.report.verdict == "fail"
    keys = [c.cause.key for c in result.causes]
    assert keys[:2] == ["adapter-untrained", "no-convergence"], keys
    assert {"A003", "L002"} <= result.report.codes()
    assert result.criteria[3].ok is False  # loss did not decrease
    assert "(+" not in result.criteria[3].evidence and "(-" not in result.criteria[3].evidence


def test_cli_writes_html_and_markdown_reports(healthy_run: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    html_path, md_path = tmp_path / "r.html", tmp_path / "r.md"
    res = runner.invoke(app, ["doctor", str(healthy_run), "--n", "2", "--max-new-tokens", "6",
                              "--report", str(html_path)])
    assert res.exit_code == 0, res.output
    page = html_path.read_text()
    assert page.startswith("<!doctype html>") and "Success criteria" in page
    res = runner.invoke(app, ["doctor", str(healthy_run), "--n", "2", "--max-new-tokens", "6",
                              "--report", str(md_path), "--json"])
    doc = json.loads(res.stdout)
    run_titles = [json.loads(line)["title"]
                  for line in (healthy_run / "train_examples.jsonl").read_text().splitlines()]
    shown = [t for t in run_titles if t in page]
    assert len(run_titles) > 2 and len(shown) == 2, shown  # --n 2: two of the run's titles
    assert doc["command"] == "doctor" and len(doc["details"]["criteria"]) == 4
    assert "## Success criteria" in md_path.read_text()


def test_cli_broken_run_exits_1_and_bad_input_exits_2(broken_run: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["doctor", str(broken_run), "--n", "2", "--max-new-tokens", "4"],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 1
    assert "most likely causes" in res.output and "adapter was never trained" in res.output
    res = runner.invoke(app, ["doctor", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "run dir not found" in res.output
