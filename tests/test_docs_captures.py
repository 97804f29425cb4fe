"""The docs' captured outputs (docs/captures, written by `make docs`) still say what the current
code prints: exit code, verdict, and each row's mark, code and label."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from captures import CAPTURES_DIR, Capture, fixtures, run, stable

pytestmark = pytest.mark.slow  # builds fixtures and runs six commands as processes


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Capture]]:
    work = tmp_path_factory.mktemp("docs")
    return work, fixtures(work)


def test_every_capture_is_shown_by_a_page() -> None:
    pages = "".join(p.read_text(encoding="utf-8") for p in CAPTURES_DIR.parent.glob("*.md"))
    for capture in CAPTURES_DIR.glob("*.txt"):
        assert f'"captures/{capture.name}"' in pages, f"no page includes {capture.name}"


@pytest.mark.parametrize("index", range(6))
def test_capture_matches_the_current_output(work: tuple[Path, list[Capture]], index: int) -> None:
    folder, captures = work
    capture = captures[index]
    code, text = run(capture, folder)
    assert "Traceback" not in text
    assert code == capture.exit_code, text
    stored = (CAPTURES_DIR / f"{capture.name}.txt").read_text(encoding="utf-8")
    assert stable(text) == stable(stored), f"docs/captures/{capture.name}.txt is stale: make docs"
    assert stable(text), "nothing stable to compare: the capture's table format changed"
