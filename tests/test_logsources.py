"""loss-report on runs logged by other tools: W&B, MLflow, LLaMA-Factory, axolotl.

W&B and MLflow runs are written by the real libraries (a real transformers Trainer reporting to
both, in a subprocess: W&B offline in a temp dir, MLflow to a temp sqlite file); LLaMA-Factory
and axolotl folders follow their documented layouts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _loss_helpers import healthy, history, write_state
from typer.testing import CliRunner

from ftdiag.cli.app import app
from ftdiag.errors import FtdiagError
from ftdiag.loss.analysis import loss_report
from ftdiag.loss.read import read_loss_log
from ftdiag.render.loss_report import config_text

if importlib.util.find_spec("wandb") is None or importlib.util.find_spec("mlflow") is None:
    pytest.skip("needs the wandb and mlflow extras (make install)", allow_module_level=True)

TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"
runner = CliRunner()

TRAIN = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import wandb
from _loss_helpers import train_tiny
train_tiny(Path({out!r}), report_to=["wandb", "mlflow"], lora_r=8, lr=1e-2)
wandb.finish()
# a second, hand-logged run in the same wandb/ dir: no step metric, W&B counts _step from 0
run = wandb.init(project="ftdiag-test", config={{"lr": 1e-4, "lora_r": 4, "alpha": 8}})
for i in range(12):
    run.log({{"loss": 3.0 - 0.1 * i}})
run.finish()
"""


@pytest.fixture(scope="module")
def hf_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real LoRA Trainer run (40 steps, eval every 10) reported to W&B (offline) and MLflow."""
    root = tmp_path_factory.mktemp("hf")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(root), "WANDB_SILENT": "true",
           "WANDB_CONSOLE": "off", "WANDB_PROJECT": "ftdiag-test", "PYTHONPATH": str(SRC),
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
           "MLFLOW_EXPERIMENT_NAME": "tiny", "OMP_NUM_THREADS": "1"}
    script = TRAIN.format(tests=str(TESTS), out=str(root / "out"))
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=root, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def _wandb_runs(root: Path) -> list[Path]:
    return sorted((root / "wandb").glob("offline-run-*"))


def _mlflow_run_id(root: Path) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    return client.search_runs([exp.experiment_id])[0].info.run_id


def cli(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, ["loss-report", *args])
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), \
        res.exception
    return res.exit_code, res.stdout, res.stderr


# --- Weights & Biases -------------------------------------------------------------------------

def test_wandb_run_folder_matches_the_trainer_state(hf_runs: Path) -> None:
    state = read_loss_log(hf_runs / "out" / "checkpoint-40" / "trainer_state.json")
    log = read_loss_log(_wandb_runs(hf_runs)[0])
    assert log.format == "wandb"
    assert [s for s, _ in log.train] == [s for s, _ in state.train] == list(range(1, 41))
    assert [v for _, v in log.train] == pytest.approx([v for _, v in state.train], rel=1e-6)
    assert [s for s, _ in log.eval] == [10, 20, 30, 40]
    assert len(log.learning_rate) == len(log.grad_norm) == 40
    assert log.config["learning_rate"] == pytest.approx(1e-2) and log.max_steps == 40
    assert (log.config["lora_r"], log.config["lora_alpha"]) == (8, 16)  # from peft_config


def test_wandb_report_shows_config_and_steps_from_1(hf_runs: Path) -> None:
    code, out, _ = cli(str(_wandb_runs(hf_runs)[0]), "--no-plot", "--min-steps", "40")
    assert code == 0, out
    assert "(wandb)" in out and "lr 0.01, max_steps 40, LoRA r 8 alpha 16" in out
    assert "(steps 1–4)" in out  # the first tenth of 40 records, numbered as logged


def test_wandb_dir_reads_the_latest_run_and_says_so(hf_runs: Path) -> None:
    log = read_loss_log(hf_runs / "wandb")
    assert Path(log.source) == _wandb_runs(hf_runs)[1].resolve()
    assert [s for s, _ in log.train] == list(range(12))  # W&B's own _step, from 0
    assert log.config == {"learning_rate": 1e-4, "lora_r": 4, "lora_alpha": 8}
    assert any("2 W&B runs here" in n for n in log.notes)


def run_fresh(code: str) -> None:
    """Run `code` in a fresh interpreter on this checkout's src; its asserts must hold."""
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(SRC)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_wandb_read_does_not_import_wandb(hf_runs: Path) -> None:
    code = ("import sys; from ftdiag.loss.read import read_loss_log; "
            f"log = read_loss_log({str(_wandb_runs(hf_runs)[0])!r}); "
            "assert len(log.train) == 40; assert 'wandb' not in sys.modules, 'imported'")
    run_fresh(code)


def test_wandb_missing_names_the_extra(hf_runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(FtdiagError) as exc:
        read_loss_log(_wandb_runs(hf_runs)[0])
    assert "ftdiag[wandb]" in exc.value.hint
    code, out, err = cli(str(_wandb_runs(hf_runs)[0]))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1


# --- MLflow ------------------------------------------------------------------------------------

def test_mlflow_sqlite_run_matches_the_trainer_state(hf_runs: Path) -> None:
    from ftdiag.loss.sources.mlflow_run import read_mlflow_run

    state = read_loss_log(hf_runs / "out" / "checkpoint-40" / "trainer_state.json")
    log = read_mlflow_run(str(hf_runs / "mlflow.db"), _mlflow_run_id(hf_runs))
    assert log.format == "mlflow" and log.label
    assert [s for s, _ in log.train] == list(range(1, 41))
    assert [v for _, v in log.train] == pytest.approx([v for _, v in state.train], rel=1e-6)
    assert [s for s, _ in log.eval] == [10, 20, 30, 40] and len(log.grad_norm) == 40
    assert log.config["learning_rate"] == pytest.approx(1e-2) and log.max_steps == 40


def test_mlflow_cli_with_sqlite_uri(hf_runs: Path) -> None:
    uri = f"sqlite:///{hf_runs / 'mlflow.db'}"
    code, out, _ = cli("--mlflow-uri", uri, "--run-id", _mlflow_run_id(hf_runs), "--no-plot",
                       "--min-steps", "40", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["details"]["format"] == "mlflow"
    assert doc["details"]["config"]["max_steps"] == 40 and doc["details"]["start_steps"] == [1, 4]


@pytest.fixture
def file_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A legacy MLflow file store (./mlruns) with one run logged through MlflowClient."""
    from mlflow.tracking import MlflowClient

    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=store.as_uri())
    run = client.create_run(client.create_experiment("exp"), run_name="lr-2e-4")
    for key, value in {"lr": "2e-4", "r": "16", "alpha": "32", "num_train_epochs": "3"}.items():
        client.log_param(run.info.run_id, key, value)
    for step, loss in enumerate(healthy(60), 1):
        client.log_metric(run.info.run_id, "loss", float(loss), step=step)
    client.log_metric(run.info.run_id, "eval_loss", 1.2, step=60)
    client.set_terminated(run.info.run_id)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")  # the user does not set it: ftdiag does
    return store, run.info.run_id


def test_mlflow_file_store_opens_without_the_env_flag(file_store: tuple[Path, str]) -> None:
    store, run_id = file_store
    for uri in (store.as_uri(), str(store)):
        code, out, _ = cli("--mlflow-uri", uri, "--run-id", run_id, "--no-plot")
        assert code == 0, out
        assert "loss report: lr-2e-4" in out and "LoRA r 16 alpha 32" in out


@pytest.mark.parametrize(("uri", "run_id", "says"), [
    ("{db}", "no-such-run", "not found"),
    ("{tmp}/missing.db", "x", "no such file or directory"),
    ("sqlite:///{tmp}/missing.db", "x", "no such sqlite file"),
    ("s3://bucket/mlruns", "x", "unsupported MLflow URI scheme"),
    ("http://127.0.0.1:9", "x", "cannot reach the MLflow tracking server"),
])
def test_mlflow_bad_input_is_one_line(hf_runs: Path, tmp_path: Path, uri: str, run_id: str,
                                      says: str) -> None:
    uri = uri.format(db=hf_runs / "mlflow.db", tmp=tmp_path)
    code, out, err = cli("--mlflow-uri", uri, "--run-id", run_id)
    assert code == 2 and out == "" and says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "missing.db").exists()  # never created


def test_mlflow_uri_and_run_id_go_together() -> None:
    code, _, err = cli("--run-id", "abc")
    assert code == 2 and "go together" in err
    code, _, err = cli()
    assert code == 2 and "give a PATH" in err


# --- LLaMA-Factory and axolotl -------------------------------------------------------------------

def write_llamafactory(out: Path, n: int = 60, eval_every: int = 20) -> Path:
    """An output_dir as LLaMA-Factory writes it: trainer_log.jsonl (LogCallback's keys, None
    values dropped), training_args.yaml (web UI), adapter_config.json."""
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for step, loss in enumerate(healthy(n), 1):
        lines.append({"current_steps": step, "total_steps": n, "loss": round(float(loss), 4),
                      "lr": 1e-4 * (1 - step / n), "epoch": round(step / 20, 2),
                      "percentage": round(step / n * 100, 2), "elapsed_time": "0:00:01",
                      "remaining_time": "0:00:09", "throughput": 1000.0,
                      "total_tokens": 512 * step})
        if step % eval_every == 0:
            lines.append({"current_steps": step, "total_steps": n, "eval_loss": 1.0 + 10 / step,
                          "epoch": round(step / 20, 2), "percentage": round(step / n * 100, 2),
                          "elapsed_time": "0:00:01", "remaining_time": "0:00:09"})
    (out / "trainer_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (out / "training_args.yaml").write_text(
        "stage: sft\nfinetuning_type: lora\nlora_rank: 8\nlora_alpha: 16\nlearning_rate: 1.0e-4\n"
        "num_train_epochs: 3.0\nper_device_train_batch_size: 2\ngradient_accumulation_steps: 8\n")
    (out / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 16,
                                                         "peft_type": "LORA"}))
    return out


def test_llamafactory_trainer_log(tmp_path: Path) -> None:
    log = read_loss_log(write_llamafactory(tmp_path / "saves"))
    assert log.format == "llamafactory" and Path(log.source).name == "trainer_log.jsonl"
    assert [s for s, _ in log.train] == list(range(1, 61)) and log.max_steps == 60
    assert [s for s, _ in log.eval] == [20, 40, 60] and log.tokens_seen == 512 * 60
    assert log.learning_rate[0] == (1, pytest.approx(1e-4 * (1 - 1 / 60)))
    assert log.config == {"lora_r": 8, "lora_alpha": 16, "learning_rate": 1e-4,
                          "num_train_epochs": 3, "batch_size": 2,
                          "gradient_accumulation_steps": 8, "framework": "LLaMA-Factory"}


def test_llamafactory_steps_are_numbered_as_logged(tmp_path: Path) -> None:
    run = write_llamafactory(tmp_path / "saves")
    code, out, _ = cli(str(run), "--no-plot")
    assert code == 0, out
    assert "(steps 1–6)" in out and "(steps 55–60)" in out  # not 0–5 (a generic JSONL's rows)
    assert "LLaMA-Factory" in out
    assert config_text(read_loss_log(run).config) == \
        "LLaMA-Factory: lr 0.0001, 3 epochs, LoRA r 8 alpha 16, batch 2 × 8 accumulation"


def test_llamafactory_log_beats_older_checkpoints(tmp_path: Path) -> None:
    run = write_llamafactory(tmp_path / "saves")
    write_state(run / "checkpoint-20", history(healthy(20)))  # killed after step 60
    assert read_loss_log(run).format == "llamafactory"
    assert loss_report([run]).details.steps == 60


def test_axolotl_output_dir(tmp_path: Path) -> None:
    out = tmp_path / "outputs" / "lora-out"
    write_state(out / "checkpoint-100", history(healthy(100)))
    (out / "adapter_config.json").write_text(json.dumps({"r": 32, "lora_alpha": 16}))
    (out / "README.md").write_text(
        "---\nlibrary_name: peft\n---\n[<img src=\"https://raw.githubusercontent.com/axolotl-ai-"
        "cloud/axolotl/main/image/axolotl-badge-web.png\" alt=\"Built with Axolotl\"/>]\n"
        "<details><summary>See axolotl config</summary>\n\naxolotl version: `0.9.2`\n```yaml\n"
        "base_model: NousResearch/Llama-3.2-1B\nadapter: lora\nlora_r: 32\nlora_alpha: 16\n"
        "micro_batch_size: 2\ngradient_accumulation_steps: 4\nnum_epochs: 1\n"
        "learning_rate: 0.0002\noutput_dir: ./outputs/lora-out\n```\n\n</details><br>\n")
    rep = loss_report([out])
    assert rep.details.format == "trainer_state"
    assert rep.details.config == {"lora_r": 32, "lora_alpha": 16, "learning_rate": 2e-4,
                                     "num_train_epochs": 1, "batch_size": 2,
                                     "gradient_accumulation_steps": 4, "framework": "axolotl"}


def test_plain_sources_do_not_import_wandb_or_mlflow(tmp_path: Path) -> None:
    run = write_llamafactory(tmp_path / "saves")
    code = ("import sys; from ftdiag.loss.analysis import loss_report; "
            f"loss_report([{str(run)!r}]); "
            "bad = {'wandb', 'mlflow'} & set(sys.modules); assert not bad, bad")
    run_fresh(code)


def test_config_names_are_normalised_without_taking_a_model_configs_alpha() -> None:
    from ftdiag.loss.sources.runconfig import normalise

    wandb_like = {"learning_rate": 1e-3, "max_steps": -1, "rope_scaling": {"alpha": 4.0},
                  "peft_config": {"default": {"r": 8, "lora_alpha": 16}}}
    assert normalise(wandb_like) == {"learning_rate": 1e-3, "lora_r": 8, "lora_alpha": 16}
    mlflow_params = {"lr": "2e-4", "r": "16", "alpha": "32", "num_train_epochs": "3.0"}
    assert normalise(mlflow_params) == {"learning_rate": 2e-4, "num_train_epochs": 3,
                                        "lora_r": 16, "lora_alpha": 32}
