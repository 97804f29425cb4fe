"""Start-up stays lazy: the CLI loads heavy libraries only in the command that needs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "transformers", "peft", "datasets", "safetensors", "huggingface_hub",
         "numpy", "pandas", "rich", "pydantic")
PROBE = """
import atexit, json, sys
atexit.register(lambda: sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n"))
sys.argv = ["ftdiag", *sys.argv[1:]]
from ftdiag.cli.app import main
main()
"""


def loaded(*args: str) -> set[str]:
    """Top-level packages imported by one CLI run in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          check=False, timeout=120)
    line = proc.stderr.rsplit("MODULES ", 1)[1]
    return {m.partition(".")[0] for m in json.loads(line)} | set(json.loads(line))


def test_importing_the_cli_loads_no_heavy_library() -> None:
    mods = loaded("--version")
    assert not mods & set(HEAVY), mods & set(HEAVY)


def test_help_loads_no_ml_library() -> None:
    mods = loaded("--help")
    assert not mods & {"torch", "transformers", "peft", "numpy", "datasets"}


def test_loss_report_json_loads_neither_rich_nor_torch(tmp_path: Path) -> None:
    state = tmp_path / "trainer_state.json"
    state.write_text(json.dumps({"log_history": [{"step": s, "loss": 2.0 / s}
                                                 for s in range(1, 80)]}))
    mods = loaded("loss-report", str(state), "--json")
    assert "numpy" in mods  # it did run the analysis
    assert not mods & {"rich", "torch", "transformers", "pydantic", "ftdiag.render.loss_report"}


def test_static_check_json_loads_no_torch(trained_adapter: Path) -> None:
    mods = loaded("check-adapter", str(trained_adapter), "--static-only", "--json")
    assert "ftdiag.adapters.stats" in mods
    assert not mods & {"torch", "transformers", "peft", "rich"}
