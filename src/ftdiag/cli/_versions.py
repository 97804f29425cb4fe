"""The oldest torch, transformers and peft ftdiag runs with, checked once at start-up.

The floors are pyproject.toml's (tests/test_versions.py keeps the three in step with it and with
constraints/lowest.txt, where `make test-lowest` runs the fast suite). Reading installed versions
from package metadata imports none of the three, so the check costs start-up nothing heavy.
"""

from __future__ import annotations

import re
from importlib import metadata

from ftdiag.errors import FtdiagError

MINIMUM = {"torch": "2.13.0", "transformers": "5.2.0", "peft": "0.18.0"}


def release(version: str) -> tuple[int, ...]:
    """'2.13.0+cpu' -> (2, 13, 0): the release numbers, enough to compare with a floor."""
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(part) for part in match.group().split(".")) if match else ()


def check_installed() -> None:
    """Raise FtdiagError naming the first missing or too-old package, its version and the floor."""
    for name, floor in MINIMUM.items():
        try:
            found = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise FtdiagError(f"{name} is not installed; ftdiag needs {name} >= {floor}",
                              hint=f"pip install '{name}>={floor}'") from None
        if release(found) < release(floor):
            raise FtdiagError(f"{name} {found} is too old; ftdiag needs {name} >= {floor}",
                              hint=f"pip install -U '{name}>={floor}', or run ftdiag from a tool "
                                   "environment of its own: uvx ftdiag ...")
