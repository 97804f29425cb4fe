"""The proof it learns: LoRA on SmolLM2-135M (CPU, a few minutes) moves loss and outputs.

Budget: ≤ 6 minutes on an idle 2-core machine (~200 training tokens/s in fp32).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftdiag.training.recipe import TrainConfig, TrainResult, train

SAMPLE = Path(__file__).resolve().parents[1] / "src/ftdiag/samples/amazon_titles_sample.json"
pytestmark = pytest.mark.slow


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 over lower-cased words (longest common subsequence)."""
    c, r = candidate.lower().split(), reference.lower().split()
    if not c or not r:
        return 0.0
    prev = [0] * (len(r) + 1)
    for cw in c:
        row = [0]
        for j, rw in enumerate(r):
            row.append(prev[j] + 1 if cw == rw else max(prev[j + 1], row[j]))
        prev = row
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, q = lcs / len(c), lcs / len(r)
    return 2 * p * q / (p + q)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out = tmp_path_factory.mktemp("slow") / "run"
    return train(TrainConfig(data=SAMPLE, out=out, base="smollm2-135m", records=200,
                             max_steps=20, lr=2e-3, batch_size=8, max_length=160,
                             eval_steps=10, logging_steps=4))


def greedy(model, tok, prompts: list[str], n: int = 48) -> list[str]:  # type: ignore[no-untyped-def]
    import torch

    outs = []
    for prompt in prompts:
        enc = tok(prompt, return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=n, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        outs.append(tok.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    return outs


def test_train_loss_falls_by_a_third(run: TrainResult) -> None:
    assert run.last_loss <= 0.7 * run.first_loss, (run.first_loss, run.last_loss)
    assert run.best_eval_loss is not None and run.best_eval_loss < run.first_loss


def test_static_check_passes(run: TrainResult) -> None:
    assert run.static is not None and run.static.verdict == "pass"


def test_outputs_differ_from_base_and_move_towards_references(run: TrainResult) -> None:
    from peft import PeftModel

    from ftdiag.model.load import load_base
    from ftdiag.prompts.template import recorded_template

    loaded = load_base("smollm2-135m")
    template = recorded_template(run.out_dir)
    assert template is not None
    rows = [json.loads(x) for x in (run.out_dir / "train_examples.jsonl").read_text().splitlines()]
    rows = rows[:3]
    prompts = [template.render(r["title"], loaded.tokenizer) for r in rows]
    model = PeftModel.from_pretrained(loaded.model, str(run.adapter_dir))
    model.eval()
    tuned = greedy(model, loaded.tokenizer, prompts)
    with model.disable_adapter():
        base = greedy(model, loaded.tokenizer, prompts)
    assert all(t != b for t, b in zip(tuned, base, strict=True)), (tuned, base)
    score_tuned = sum(rouge_l(t, r["content"]) for t, r in zip(tuned, rows, strict=True))
    score_base = sum(rouge_l(b, r["content"]) for b, r in zip(base, rows, strict=True))
    assert score_tuned > score_base, (score_tuned, score_base, tuned, base)
