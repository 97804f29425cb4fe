"""ab-test and merge on the real embedded SmolLM2-135M (slow: loads the model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftdiag.cli.app import app
from ftdiag.testing.tiny import save_random_adapter

TITLES = ["Stainless Steel Insulated Water Bottle 750ml", "Wireless Bluetooth Headphones",
          "Organic Cotton T-Shirt for Men"]


def random_adapter(out: Path) -> Path:
    """A LoRA adapter on SmolLM2 with small random lora_B (what a few training steps give)."""
    return save_random_adapter("smollm2-135m", out, target_modules=["q_proj", "v_proj"])


@pytest.mark.slow
def test_ab_test_on_smollm2(tmp_path: Path) -> None:
    adapter = random_adapter(tmp_path / "adapter")
    titles = tmp_path / "titles.txt"
    titles.write_text("\n".join(TITLES) + "\n")
    res = CliRunner().invoke(app, ["ab-test", "--adapter", str(adapter), "--base", "smollm2-135m",
                                   "--titles", str(titles), "--max-new-tokens", "16",
                                   "--check-batch", "--json"])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    summary = doc["details"]["summary"]
    assert summary["n"] == 3 and summary["identical"] < 3
    assert summary["plan"]["mixed_batch"] is True
    codes = {c["code"]: c["status"] for c in doc["checks"]}
    assert codes["R004"] == "pass" and codes["B004"] == "pass" and codes["B001"] == "pass"
    assert codes["R009"] == "warn"  # SmolLM2's pad token is its EOS
