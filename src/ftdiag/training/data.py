"""Training data: read title → description records, filter with reasons, split, tokenize, D0xx.

The recipe: take the first `records` rows (the original report's RECORDS_TO_FINETUNNING), drop empty
titles/descriptions and exact duplicates, split by unique title (so no eval title is trained on),
tokenize prompt + description + EOS with labels on the description and EOS only, and drop
examples whose description would be truncated away entirely at `max_length`.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftdiag.errors import FtdiagError
from ftdiag.findings import Finding, finding, passed
from ftdiag.prompts.records import Record, read_records, read_rows
from ftdiag.prompts.template import PromptTemplate

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

IGNORE = -100
MIN_EXAMPLES = 100  # D001 below this many training examples
PAD_CANDIDATES = ("<|endoftext|>", "<pad>", "<|pad|>", "[PAD]", "<unk>")
REASONS = ("empty-title", "empty-description", "duplicate", "truncated")


@dataclass
class Example:
    """One tokenized training example: prompt + completion ids, labels masked on the prompt."""

    title: str
    content: str
    input_ids: list[int]
    labels: list[int]

    @property
    def n_trained(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


@dataclass
class DataSummary:
    """What happened to the records on the way to training (printed as the data table)."""

    path: str
    sha256: str
    title_field: str | None
    text_field: str | None
    read: int
    requested: int | None
    used: int
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    train_size: int = 0
    eval_size: int = 0
    train_tokens: int = 0
    trained_label_tokens: int = 0
    eos_cut: int = 0  # examples whose EOS fell beyond max_length
    notes: list[str] = field(default_factory=list)


@dataclass
class PreparedData:
    """Tokenized splits, the records behind them and the D0xx checks."""

    train: list[Example]
    eval: list[Example]
    summary: DataSummary
    checks: list[Finding]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def norm_title(title: str) -> str:
    """The key titles are compared by (case and whitespace do not make a new title)."""
    return re.sub(r"\s+", " ", title).strip().casefold()


def resolve_fields(path: Path, title_field: str | None, text_field: str | None
                   ) -> tuple[str | None, str | None]:
    """The field names read_records will use (recorded in the meta file)."""
    from ftdiag.prompts.records import TEXT_FIELDS, TITLE_FIELDS, pick_field

    rows = read_rows(path)
    fields = list(rows[0].keys()) if rows else []
    return (pick_field(fields, title_field, TITLE_FIELDS, "title", path),
            pick_field(fields, text_field, TEXT_FIELDS, "description", path))


def select_records(records: list[Record], n: int | None, summary: DataSummary) -> list[Record]:
    """The first `n` records (all of them, with a note, when the file has fewer)."""
    if n is None:
        return records
    if n <= 0:
        raise FtdiagError(f"--records must be positive, got {n}")
    if n > len(records):
        summary.notes.append(f"--records {n} is more than the {len(records)} records in the "
                             f"file: using all {len(records)}")
        log.warning(summary.notes[-1])
        return records
    return records[:n]


def filter_records(records: list[Record], summary: DataSummary) -> list[Record]:
    """Drop empty titles/descriptions and exact duplicates, counting each reason."""
    kept: list[Record] = []
    seen: set[tuple[str, str]] = set()
    for rec in records:
        title, content = rec.title.strip(), (rec.content or "").strip()
        if not title:
            summary.dropped["empty-title"] += 1
        elif not content:
            summary.dropped["empty-description"] += 1
        elif (title, content) in seen:
            summary.dropped["duplicate"] += 1
        else:
            seen.add((title, content))
            kept.append(Record(title, content, rec.uid))
    return kept


def split_by_title(records: list[Record], eval_share: float, seed: int
                   ) -> tuple[list[Record], list[Record]]:
    """Split so that every example of a title lands on the same side (no eval leak)."""
    if not 0.0 <= eval_share < 1.0:
        raise FtdiagError(f"--eval-share must be in [0, 1), got {eval_share}")
    titles = sorted({norm_title(r.title) for r in records})
    random.Random(seed).shuffle(titles)
    n_eval = round(len(titles) * eval_share)
    if eval_share > 0 and len(titles) >= 2:
        n_eval = min(max(n_eval, 1), len(titles) - 1)
    eval_titles = set(titles[:n_eval])
    train = [r for r in records if norm_title(r.title) not in eval_titles]
    evals = [r for r in records if norm_title(r.title) in eval_titles]
    rng = random.Random(seed + 1)
    rng.shuffle(train)
    return train, evals


def training_pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """A pad id distinct from EOS, so masking pads never masks the EOS we want trained."""
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    if pad is not None and pad != eos:
        return int(pad)
    vocab = tokenizer.get_vocab()
    for tok in PAD_CANDIDATES:
        if tok in vocab and vocab[tok] != eos:
            return int(vocab[tok])
    for tid in (tokenizer.unk_token_id, tokenizer.bos_token_id, 0):
        if tid is not None and tid != eos:
            return int(tid)
    return 1 if eos == 0 else 0  # pads are never attended to nor trained, any id works


def set_training_pad(tokenizer: PreTrainedTokenizerBase) -> None:
    """Give the tokenizer a pad token distinct from EOS (no new tokens are added)."""
    if tokenizer.eos_token_id is None:
        raise FtdiagError("the tokenizer has no EOS token: the model could not learn to stop")
    pad_id = training_pad_id(tokenizer)
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad_id)
    tokenizer.padding_side = "right"


def tokenize(rec: Record, template: PromptTemplate, tokenizer: PreTrainedTokenizerBase,
             max_length: int) -> Example:
    """prompt + description + EOS, truncated to max_length, labels only on description + EOS."""
    prompt = template.render(rec.title, tokenizer)
    prompt_ids = tokenizer(prompt, add_special_tokens=not template.is_chat)["input_ids"]
    completion_ids = tokenizer(rec.content or "", add_special_tokens=False)["input_ids"]
    completion_ids = [*completion_ids, int(tokenizer.eos_token_id)]
    ids = (list(prompt_ids) + completion_ids)[:max_length]
    n_prompt = min(len(prompt_ids), len(ids))
    labels = [IGNORE] * n_prompt + ids[n_prompt:]
    return Example(rec.title, rec.content or "", ids, labels)


def tokenize_split(records: list[Record], template: PromptTemplate,
                   tokenizer: PreTrainedTokenizerBase, max_length: int,
                   summary: DataSummary) -> list[Example]:
    """Tokenize a split, dropping examples with no description token left at max_length."""
    out: list[Example] = []
    for rec in records:
        ex = tokenize(rec, template, tokenizer, max_length)
        if ex.n_trained == 0:
            summary.dropped["truncated"] += 1
            continue
        out.append(ex)
    return out


def data_checks(train: list[Example], evals: list[Example], summary: DataSummary,
                eos_id: int) -> list[Finding]:
    """D001–D004 on the tokenized splits."""
    checks: list[Finding] = []
    why = ", ".join(f"{n} {r}" for r, n in summary.dropped.items() if n) or "none dropped"
    if len(train) < MIN_EXAMPLES:
        checks.append(finding(
            "D001", f"{len(train)} training examples after filtering ({why})",
            hint=f"use at least {MIN_EXAMPLES} examples (raise --records, fix the data)",
            train=len(train), dropped=summary.dropped))
    else:
        checks.append(passed("D001", f"{len(train)} training examples ({why})", train=len(train)))
    empty = sum(1 for ex in train if ex.n_trained == 0) + summary.dropped["truncated"]
    total = len(train) + summary.dropped["truncated"]
    checks.append(labels_check(
        total, empty, f" at max_length {_max_len(train)}",
        hint="raise --max-length or shorten the prompt template",
        hint_some="truncated away and dropped: raise --max-length to keep them"))
    eos_trained = sum(1 for ex in train if eos_id in [t for t in ex.labels if t != IGNORE])
    summary.eos_cut = len(train) - eos_trained
    checks.append(eos_check(len(train), eos_trained, eos_id,
                            hint="raise --max-length so descriptions end inside the window",
                            eos_cut=summary.eos_cut))
    train_titles = {norm_title(ex.title) for ex in train}
    leaked = sorted({ex.title for ex in evals if norm_title(ex.title) in train_titles})
    if leaked:
        checks.append(finding("D004", f"{len(leaked)} eval titles also appear in train",
                              hint="split by unique title", leaked=leaked[:10]))
    else:
        checks.append(passed("D004", f"no eval title appears in train ({len(evals)} eval)"))
    return checks


def labels_check(total: int, empty: int, where: str = "", *, hint: str = "",
                 hint_some: str = "", **evidence: Any) -> Finding:
    """D002 from counts: fail when no example has a trainable label token, warn when some."""
    if total and empty == total:
        return finding("D002", f"all {total} examples have no trainable label token{where}",
                       hint=hint, examples=total, no_labels=empty, **evidence)
    if empty:
        return finding("D002", f"{empty} of {total} examples have no trainable label token"
                       f"{where}", status="warn", hint=hint_some or hint, examples=total,
                       no_labels=empty, **evidence)
    return passed("D002", f"every example has trainable label tokens{where}", examples=total)


def eos_check(examples: int, eos_trained: int, eos_id: int, *, hint: str,
              **evidence: Any) -> Finding:
    """D003 from counts: warn when EOS is a trained label token in none of the examples."""
    src = evidence.get("eos_source")
    where = f", from {src}" if src and src != "tokenizer" else ""
    if examples and eos_trained == 0:
        return finding("D003", f"EOS (id {eos_id}{where}) is not among the trained label tokens",
                       hint=hint, eos_id=eos_id, examples=examples, **evidence)
    return passed("D003", f"EOS trained in {eos_trained} of {examples} examples",
                  eos_id=eos_id, **evidence)


def _max_len(train: list[Example]) -> str:
    return str(max((len(ex.input_ids) for ex in train), default="?"))


def leak_check(train_titles: list[str], eval_titles: list[str]) -> Finding:
    """D004 for any two title lists (used by other commands on recorded splits)."""
    seen = {norm_title(t) for t in train_titles}
    leaked = sorted({t for t in eval_titles if norm_title(t) in seen})
    if leaked:
        return finding("D004", f"{len(leaked)} eval titles also appear in train",
                       hint="split by unique title", leaked=leaked[:10])
    return passed("D004", f"no eval title appears in train ({len(eval_titles)} eval)")


def prepare_data(path: str | Path, tokenizer: PreTrainedTokenizerBase, template: PromptTemplate,
                 *, records: int | None = None, eval_share: float = 0.1, seed: int = 42,
                 max_length: int = 256, title_field: str | None = None,
                 text_field: str | None = None) -> PreparedData:
    """Read → select → filter → split by title → tokenize → D0xx. Raises when nothing trains."""
    if max_length < 8:
        raise FtdiagError(f"--max-length must be at least 8, got {max_length}")
    p = Path(path).expanduser()
    raw = read_records(p, title_field, text_field, require_text=True)
    tf, xf = resolve_fields(p, title_field, text_field)
    summary = DataSummary(str(p.resolve()), file_sha256(p), tf, xf, read=len(raw),
                          requested=records, used=0)
    chosen = select_records(raw, records, summary)
    summary.used = len(chosen)
    clean = filter_records(chosen, summary)
    train_recs, eval_recs = split_by_title(clean, eval_share, seed)
    train = tokenize_split(train_recs, template, tokenizer, max_length, summary)
    evals = tokenize_split(eval_recs, template, tokenizer, max_length, summary)
    summary.kept = len(train) + len(evals)
    summary.train_size, summary.eval_size = len(train), len(evals)
    summary.train_tokens = sum(len(ex.input_ids) for ex in train)
    summary.trained_label_tokens = sum(ex.n_trained for ex in train)
    checks = data_checks(train, evals, summary, int(tokenizer.eos_token_id))
    if not train:
        counts = ", ".join(f"{n} {r}" for r, n in summary.dropped.items() if n)
        raise FtdiagError(f"no training examples left in {p} ({summary.used} used: {counts})",
                          hint="check --title-field/--text-field, --records and --max-length")
    return PreparedData(train, evals, summary, checks)


def examples_jsonl(examples: list[Example]) -> str:
    """title/content JSON lines of a split (read back by doctor and ab-test)."""
    import json

    return "".join(json.dumps({"title": ex.title, "content": ex.content}, ensure_ascii=False)
                   + "\n" for ex in examples)
