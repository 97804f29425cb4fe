"""The docs site builds with `mkdocs build --strict`, its code table is generated from
findings.CODES, and the README stays a landing page."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from ftdiag.findings import CODES

ROOT = Path(__file__).resolve().parents[1]


def test_site_builds_strict_with_every_code(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d",
                           str(site)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    codes = (site / "codes" / "index.html").read_text(encoding="utf-8")
    shown = set(re.findall(r"<td>([A-Z]\d{3})</td>", codes))
    assert shown == set(CODES)
    for info in CODES.values():  # what a pass proves sits in the code's own row
        row = codes.split(f"<td>{info.code}</td>", 1)[1].split("</tr>", 1)[0]
        assert info.name in row and info.severity in row


def test_readme_is_a_landing_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link


def test_user_facing_words_never_say_the_seed() -> None:
    pages = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "docs").glob("*/*.txt")]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"\bthe seed\b|\bseed's\b", text, re.I), page.name


def test_readme_tour_is_cut_from_the_demo_capture() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tour = readme.split("$ make demo\n", 1)[1].split("```", 1)[0].splitlines()
    capture = (ROOT / "docs" / "captures" / "demo.txt").read_text(encoding="utf-8").splitlines()
    shown = [line for line in tour if not line.startswith("…")]
    assert len(shown) > 20
    assert all(line in capture for line in shown), [x for x in shown if x not in capture][:3]
