"""`make mutate`: mutmut over the check modules, each against its own tests, survivors printed.

One mutmut run per group below, in a scratch copy of src/ and tests/ (so each group has its own
[tool.mutmut] test selection and the work tree is never touched). `python tests/_mutate.py
[GROUP ...]` runs some groups. Two scores are printed: killed / (killed + survived), and the
honest one, killed / (killed + survived + no tests), where a "no tests" mutant sits in a
function that no test of its group reaches (a check nothing exercises is a check nothing
guards). Timeouts count as killed. Lines marked `# pragma: no mutate` are not mutated: each
carries its reason, and docs/development.md lists them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTMUT = Path(sys.executable).parent / "mutmut"
# group: (modules mutated, the tests that own them)
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "served": (["src/ftdiag/abtest/served_checks.py"], ["tests/test_served_checks.py"]),
    "loss": (["src/ftdiag/loss/analysis.py"],
             ["tests/test_loss_units.py", "tests/test_convergence.py"]),
    "delta": (["src/ftdiag/export/delta.py"],
              ["tests/test_delta_units.py", "tests/test_check_export.py"]),
    "modelfile": (["src/ftdiag/export/modelfile.py"],
                  ["tests/test_modelfile_checks.py", "tests/test_check_export_modelfile.py"]),
    "gguf": (["src/ftdiag/export/weights.py", "src/ftdiag/export/gguf_lora.py"],
             ["tests/test_weights_units.py", "tests/test_gguf_lora_units.py",
              "tests/test_check_export_gguf.py", "tests/test_check_export_lora_gguf.py"]),
    "merge": (["src/ftdiag/export/merge.py"],
              ["tests/test_merge_units.py", "tests/test_merge.py"]),
    "base-checks": (["src/ftdiag/adapters/base_checks.py"],
                    ["tests/test_base_checks_units.py", "tests/test_check_static.py"]),
    "runtime": (["src/ftdiag/adapters/runtime.py"],
                ["tests/test_runtime_units.py", "tests/test_check_runtime.py"]),
    "data": (["src/ftdiag/training/checks.py"], ["tests/test_training_checks.py"]),
}


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def _results(scratch: Path) -> dict[str, list[str]]:
    """Mutant names by status, as `mutmut results` lists them in a scratch copy."""
    out = subprocess.run([str(MUTMUT), "results", "--all", "true"], cwd=scratch,
                         capture_output=True, text=True, check=False).stdout
    by: dict[str, list[str]] = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+): (\w[\w ]*)$", line)
        if m:
            by.setdefault(m.group(2), []).append(m.group(1))
    return by


def _env(scratch: Path) -> dict[str, str]:
    """mutmut's environment: the session fixtures built once per group run (tests/conftest.py),
    in a fresh folder inside the scratch copy, and the unit tests run first."""
    cache = scratch / "fixture-cache"
    shutil.rmtree(cache, ignore_errors=True)
    return {**os.environ, "FTDIAG_TEST_FIXTURE_CACHE": str(cache), "FTDIAG_TEST_UNITS_FIRST": "1"}


def run_group(name: str, work: Path, survivors: bool = False) -> dict[str, list[str]]:
    """Mutate one group in a scratch copy; mutant names by status.

    survivors: keep the last run's scratch copy and re-test only its survivors (and the mutants
    no test reached) against the tests now in tests/ (minutes instead of a full run).
    """
    modules, tests = GROUPS[name]
    scratch = work / name
    if survivors and (scratch / "mutants").is_dir():
        for dst in (scratch / "tests", scratch / "mutants" / "tests"):
            shutil.copytree(ROOT / "tests", dst, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "mutants"))
        last = _results(scratch)
        again = last.get("survived", []) + last.get("no tests", [])
        if again:
            subprocess.run([str(MUTMUT), "run", "--max-children", "1", *again], cwd=scratch,
                           env=_env(scratch), check=False)
        return _print_survivors(scratch, _results(scratch))
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    shutil.copytree(ROOT / "src", scratch / "src")
    shutil.copytree(ROOT / "tests", scratch / "tests",
                    ignore=shutil.ignore_patterns("__pycache__", "mutants"))
    shutil.copytree(ROOT / "examples", scratch / "examples")  # test_data runs its generator
    config = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    config += ("\n[tool.mutmut]\n"
               f'source_paths = ["src"]\nonly_mutate = {_toml_list(modules)}\n'
               f"pytest_add_cli_args_test_selection = {_toml_list(tests)}\n"
               'pytest_add_cli_args = ["-p", "no:cacheprovider", "-m", "not slow"]\n'
               'also_copy = ["examples"]\n')
    (scratch / "pyproject.toml").write_text(config, encoding="utf-8")
    subprocess.run([str(MUTMUT), "run", "--max-children", "1"], cwd=scratch, env=_env(scratch),
                   check=False)
    return _print_survivors(scratch, _results(scratch))


def _print_survivors(scratch: Path, by: dict[str, list[str]]) -> dict[str, list[str]]:
    for mutant in by.get("survived", []):  # `mutmut show NAME` in the scratch copy: its diff
        print(f"survived: {mutant}  (cd {scratch} && {MUTMUT} show {mutant})")
    return by


def score(killed: int, survived: int, no_tests: int) -> str:
    """Both scores: over the mutants tests reached, and over all (no tests counted as lost)."""
    ran, every = killed + survived, killed + survived + no_tests
    if not every:
        return "no mutants"
    reached = f"{killed}/{ran} = {killed / ran:.1%}" if ran else "none reached"
    return f"{reached} of the mutants reached; {killed}/{every} = {killed / every:.1%} of all"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("groups", nargs="*", default=list(GROUPS), choices=[*GROUPS, []])
    parser.add_argument("--work", type=Path, default=Path("/tmp/ftdiag-mutate"))
    parser.add_argument("--survivors", action="store_true",
                        help="re-test only the last run's survivors against the current tests")
    args = parser.parse_args()
    total = {"killed": 0, "survived": 0, "no tests": 0}
    lines = []
    for name in args.groups:
        by = run_group(name, args.work, args.survivors)
        counts = {"killed": len(by.get("killed", [])) + len(by.get("timeout", [])),
                  "survived": len(by.get("survived", [])),
                  "no tests": len(by.get("no tests", []))}
        for k, v in counts.items():
            total[k] += v
        unreached: dict[str, int] = {}  # function -> its mutants that no test reaches
        for mutant in by.get("no tests", []):
            fn = mutant.rsplit("__mutmut_", 1)[0]
            unreached[fn] = unreached.get(fn, 0) + 1
        for fn, n in unreached.items():
            print(f"no tests: {fn} ({n} mutants)")
        other = {k: len(v) for k, v in by.items()
                 if k not in ("killed", "timeout", "survived", "no tests")}
        lines.append(f"{name}: {counts['killed']} killed, {counts['survived']} survived, "
                     f"{counts['no tests']} no tests{f' {other}' if other else ''}; "
                     f"score {score(*counts.values())}")
        print(lines[-1], flush=True)
    print("\n".join(lines))
    print(f"total: {score(*total.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
