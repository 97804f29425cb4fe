"""The package layout is the architecture: every import in src/ftdiag points down a floor.

Read from the code's own imports (module level, inside functions and under TYPE_CHECKING alike),
so a helper reached for from a higher floor fails here, not in a review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ftdiag

SRC = Path(ftdiag.__file__).parent

# Lowest floor first. A unit is a top-level module or a package of src/ftdiag.
FLOORS: list[set[str]] = [
    {"_version", "errors", "findings", "atomic", "progress", "distributed", "runmeta",
     "safeio", "timing"},  # kernel
    {"model", "prompts"},
    {"generation", "loss", "testing"},
    {"adapters"},
    {"abtest", "export", "training"},
    {"doctor"},
    {"demo"},
    {"render"},
    {"cli"},
    {"__init__", "__main__", "callback"},  # the public faces
]
FLOOR = {unit: i for i, units in enumerate(FLOORS) for unit in units}


def unit_of(module: str) -> str:
    """`ftdiag.abtest.local` -> `abtest`; `ftdiag` -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(path: Path, root: Path = SRC) -> set[str]:
    """Every ftdiag module named by an import statement anywhere in one file."""
    module = ".".join(("ftdiag", *path.relative_to(root).with_suffix("").parts))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "ftdiag"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            if base.split(".")[0] != "ftdiag":
                continue
            # `from ftdiag.render import progress` names the module ftdiag.render.progress
            found |= {f"{base}.{a.name}" if (root.joinpath(*base.split(".")[1:], f"{a.name}.py")
                      .is_file()) else base for a in node.names}
    return found


def edges(root: Path = SRC) -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) -> the files where that import happens."""
    out: dict[tuple[str, str], list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        src_unit = unit_of(".".join(("ftdiag", *path.relative_to(root).with_suffix("").parts)))
        if path == root / "__init__.py":
            src_unit = "__init__"
        for target in imports_of(path, root):
            dst_unit = unit_of(target)
            if dst_unit != src_unit:
                out.setdefault((src_unit, dst_unit), []).append(str(path.relative_to(root)))
    return out


def test_every_unit_has_a_floor() -> None:
    units = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").is_file())}
    assert units == set(FLOOR), f"floors to assign: {units ^ set(FLOOR)}"


def test_imports_point_down() -> None:
    upward = {f"{a} (floor {FLOOR[a]}) imports {b} (floor {FLOOR[b]}) in {files}"
              for (a, b), files in edges().items() if FLOOR[b] > FLOOR[a]}
    assert not upward, "\n".join(sorted(upward))


def test_no_import_between_packages_of_one_floor() -> None:
    sideways = {f"{a} imports {b} in {files}" for (a, b), files in edges().items()
                if FLOOR[a] == FLOOR[b] and FLOOR[a] not in (0, len(FLOORS) - 1)}
    assert not sideways, "\n".join(sorted(sideways))


def test_at_most_twelve_top_level_modules() -> None:
    modules = sorted(p.name for p in SRC.glob("*.py"))
    assert len(modules) <= 12, modules


def test_the_checker_sees_every_kind_of_import(tmp_path: Path) -> None:
    root = tmp_path / "ftdiag"
    (root / "generation").mkdir(parents=True)
    (root / "render").mkdir()
    (root / "render" / "progress.py").write_text("")
    (root / "generation" / "arms.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from ..model import live\n"  # relative, downward
        "if TYPE_CHECKING:\n    from ftdiag.training.recipe import TrainConfig\n"
        "def f():\n    from ftdiag.cli.app import app\n"
        "    import ftdiag.doctor.run\n"
        "    from ftdiag.render import progress\n")
    assert set(edges(root)) == {("generation", u) for u in
                                ("model", "training", "cli", "doctor", "render")}
    assert "ftdiag.render.progress" in imports_of(root / "generation" / "arms.py", root)
