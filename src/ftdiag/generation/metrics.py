"""Compare outputs: word diffs, ROUGE-L, token-F1, reference NLL and merged-vs-adapter tolerance."""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ftdiag.findings import Finding, finding, passed

if TYPE_CHECKING:
    import torch

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class DiffOp:
    """A run of words: 'equal', 'delete' (only in a), 'insert' (only in b)."""

    op: str
    text: str


MAX_DIFF_WORDS = 2000  # words of each text aligned (difflib is quadratic); the rest is shown as is


def word_diff(a: str, b: str) -> list[DiffOp]:
    """Word-level diff of two texts (whitespace kept with its word) for highlighting.

    The first MAX_DIFF_WORDS words of each are aligned; words past them follow as one deleted
    and one inserted run, so a runaway output costs linear time, not quadratic.
    """
    wa, wb = re.findall(r"\S+\s*", a), re.findall(r"\S+\s*", b)
    rest = ["".join(wa[MAX_DIFF_WORDS:]), "".join(wb[MAX_DIFF_WORDS:])]
    wa, wb = wa[:MAX_DIFF_WORDS], wb[:MAX_DIFF_WORDS]
    ops: list[DiffOp] = []
    matcher = difflib.SequenceMatcher(a=wa, b=wb, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            ops.append(DiffOp("equal", "".join(wa[i1:i2])))
            continue
        if i2 > i1:
            ops.append(DiffOp("delete", "".join(wa[i1:i2])))
        if j2 > j1:
            ops.append(DiffOp("insert", "".join(wb[j1:j2])))
    ops += [DiffOp(op, text) for op, text in zip(("delete", "insert"), rest, strict=True) if text]
    return ops


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@functools.cache
def _rouge_l_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"])


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 by Google's `rouge-score` (what papers and `evaluate` report; no stemming)."""
    return float(_rouge_l_scorer().score(reference, candidate)["rougeL"].fmeasure)


def token_f1(candidate: str, reference: str) -> float:
    """Bag-of-words F1 (SQuAD style) over lower-cased words."""
    c, r = words(candidate), words(reference)
    common = sum((Counter(c) & Counter(r)).values())
    if common == 0:
        return 0.0
    p, rec = common / len(c), common / len(r)
    return 2 * p * rec / (p + rec)


def first_divergence(a: list[int], b: list[int]) -> int | None:
    """Index of the first generated token where a and b differ (None when identical)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def mean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


@dataclass
class LogitGap:
    """How far two arms' prompt logits are apart, against a tolerance."""

    max_abs: float
    scale: float  # max |logit| of the reference arm
    tolerance: float

    @property
    def within(self) -> bool:
        return self.max_abs <= self.tolerance


def logit_gap(ref: list[torch.Tensor], other: list[torch.Tensor], *, atol: float = 1e-3,
              rtol: float = 1e-4) -> LogitGap:
    """max |Δlogit| over every prompt position; tolerance = atol + rtol * max |logit|."""
    gap = max(float((a - b).abs().max()) for a, b in zip(ref, other, strict=True))
    scale = max(float(a.abs().max()) for a in ref)
    return LogitGap(gap, scale, atol + rtol * scale)


def merged_gap_finding(gap: LogitGap, subject: str, detail: str = "", *, hint: str,
                       **evidence: Any) -> Finding:
    """B002 from a merged-vs-(base+adapter) logit gap: fail beyond tolerance, pass within it."""
    ev: dict[str, Any] = {"max_abs_logit_diff": gap.max_abs, "tolerance": gap.tolerance,
                          **evidence}
    if not gap.within:
        return finding("B002", f"{subject} differs from base+adapter: max |Δlogit| "
                       f"{gap.max_abs:.3g} > {gap.tolerance:.3g}{detail}", hint=hint, **ev)
    return passed("B002", f"{subject} ≡ base+adapter{detail}: max |Δlogit| {gap.max_abs:.3g} ≤ "
                  f"{gap.tolerance:.3g}", **ev)


NLL_TOKENS = 256  # tokens per reference-NLL forward pass (peak memory grows with it)


def _chunks(rows: list[tuple[list[int], int, str]], most: int
            ) -> list[list[tuple[list[int], int, str]]]:
    """Consecutive rows, at most `most` per chunk and NLL_TOKENS padded tokens (>= one row)."""
    out: list[list[tuple[list[int], int, str]]] = []
    for row in rows:
        last = out[-1] if out else None
        width = max([len(r[0]) for r in last or []] + [len(row[0])])
        if last is not None and len(last) < most and width * (len(last) + 1) <= NLL_TOKENS:
            last.append(row)
        else:
            out.append([row])
    return out


def reference_nll(model: Any, tokenizer: Any, prompts: list[str], references: list[str],
                  adapter_names: list[str] | None, *, max_len: int, batch_size: int = 8
                  ) -> list[float]:
    """Mean per-token NLL of each reference given its prompt; one row per (prompt, name).

    Left-padded rows end together, so only the last positions (those predicting reference
    tokens) go through the LM head (`logits_to_keep`): rows x reference length x vocab floats,
    not rows x whole width x vocab (hundreds of MB at a 50k vocab). A forward pass holds at most
    NLL_TOKENS tokens (or one row): its activations are what the peak memory grows with.
    """
    import torch
    import torch.nn.functional as F

    from ftdiag.generation.decode import left_pad

    names = adapter_names or [""]
    rows: list[tuple[list[int], int, str]] = []
    for prompt, ref in zip(prompts, references, strict=True):
        p_ids = tokenizer(prompt)["input_ids"]
        r_ids = tokenizer(ref, add_special_tokens=False)["input_ids"]
        ids = (p_ids + r_ids)[:max_len]
        rows.extend((ids, max(1, min(len(p_ids), len(ids))), n) for n in names)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    nll: list[float] = []
    for chunk in _chunks(rows, batch_size):
        keep = max(len(row) - n_prompt for row, n_prompt, _ in chunk) + 1
        ids, mask = left_pad([row for row, _, _ in chunk], pad)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        kwargs = {"adapter_names": [r[2] for r in chunk]} if adapter_names else {}
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                           position_ids=pos.to(device), logits_to_keep=keep, **kwargs).logits
        for k, (row, n_prompt, _) in enumerate(chunk):
            n = len(row) - n_prompt  # the last n tokens, predicted by the n positions before
            if not n:
                nll.append(float("nan"))
                continue
            target = torch.tensor(row[n_prompt:], dtype=torch.long, device=device)
            nll.append(float(F.cross_entropy(logits[k, keep - 1 - n:keep - 1].float(), target)))
    return nll
