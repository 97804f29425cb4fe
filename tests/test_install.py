"""`pip install ftdiag` into a user's environment leaves their torch, transformers and peft alone.

The wheel and sdist are built and checked (`python -m build`, `twine check`); the wheel goes into
a fresh venv that already holds the lowest supported stack (constraints/lowest.txt), and ftdiag
then checks an adapter trained there with that environment's own transformers and peft.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
pytest.importorskip("build", reason="needs the dev extra (make install)")
pytest.importorskip("twine", reason="needs the dev extra (make install)")

ROOT = Path(__file__).resolve().parents[1]
STACK = ("torch", "transformers", "peft")
VERSIONS = ("import json, importlib.metadata as m; "
            f"print(json.dumps({{n: m.version(n) for n in {STACK!r}}}))")
ADAPTER = """
import sys
from ftdiag.testing import tiny
base = tiny.save_base(sys.argv[1] + "/base", "llama")
tiny.train_toy_adapter(base, sys.argv[1] + "/adapter")
"""


def sh(*cmd: str | Path, timeout: int = 900, stderr: bool = False) -> str:
    """Run a command and return its stdout (and stderr); fail the test when the command fails."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout[-3000:]}" \
                                 f"\n{proc.stderr[-3000:]}"
    return proc.stdout + (proc.stderr if stderr else "")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist, and the wheel built from it, in a temp folder."""
    out = tmp_path_factory.mktemp("dist")
    sh(sys.executable, "-m", "build", "--outdir", out, ROOT)
    return out


def test_wheel_and_sdist_build_and_pass_twine_check(dist: Path) -> None:
    files = sorted(p.name for p in dist.iterdir())
    assert {f.rsplit(".", 1)[-1] for f in files} == {"gz", "whl"} and len(files) == 2, files
    out = sh(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()),
             stderr=True)
    assert out.count("PASSED") == 2, out


def test_wheel_into_the_lowest_stack_moves_nothing_and_checks_an_adapter(
    dist: Path, tmp_path: Path
) -> None:
    env = tmp_path / "user-env"
    sh(sys.executable, "-m", "venv", env)
    py = env / "bin" / "python"
    sh(py, "-m", "pip", "install", "-q", "-c", ROOT / "constraints" / "lowest.txt", *STACK)
    before = json.loads(sh(py, "-c", VERSIONS))

    sh(py, "-m", "pip", "install", "-q", next(dist.glob("*.whl")))
    assert json.loads(sh(py, "-c", VERSIONS)) == before

    sh(py, "-c", ADAPTER, tmp_path)
    out = sh(env / "bin" / "ftdiag", "check-adapter", tmp_path / "adapter")
    assert "verdict: PASS" in out, out
