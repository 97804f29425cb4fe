"""ftdiag.training.data: filtering with reasons, the title split, labels, D001–D004, sample data."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
from _train_helpers import toy_records, write_jsonl

from ftdiag.errors import FtdiagError
from ftdiag.prompts.records import Record
from ftdiag.prompts.template import PromptTemplate
from ftdiag.testing import tiny
from ftdiag.training.data import (
    IGNORE,
    DataSummary,
    data_checks,
    filter_records,
    leak_check,
    norm_title,
    prepare_data,
    set_training_pad,
    split_by_title,
    tokenize,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture()
def tok():  # type: ignore[no-untyped-def]
    t = tiny.build_tokenizer()
    set_training_pad(t)
    return t


def _summary() -> DataSummary:
    return DataSummary("x", "0", "title", "content", read=0, requested=None, used=0)


def _status(checks: list, code: str) -> str:  # type: ignore[type-arg]
    return next(c.status for c in checks if c.code == code)


def test_filter_drops_empty_and_duplicates_with_reasons() -> None:
    recs = [Record("a", "x"), Record("  ", "x"), Record("b", " \n"), Record("a", "x"),
            Record("a", "y"), Record("c", None)]
    s = _summary()
    kept = filter_records(recs, s)
    assert [(r.title, r.content) for r in kept] == [("a", "x"), ("a", "y")]
    assert s.dropped == {"empty-title": 1, "empty-description": 2, "duplicate": 1,
                         "truncated": 0}


def test_split_keeps_every_title_on_one_side() -> None:
    recs = [Record(f"Title {i % 30}", f"text {i}") for i in range(90)]
    recs += [Record("TITLE  3", "case variant")]  # same title after normalisation
    train, evals = split_by_title(recs, 0.2, seed=1)
    train_t = {norm_title(r.title) for r in train}
    eval_t = {norm_title(r.title) for r in evals}
    assert not train_t & eval_t
    assert len(eval_t) == 6 and len(train) + len(evals) == len(recs)
    assert leak_check([r.title for r in train], [r.title for r in evals]).status == "pass"


def test_labels_mask_the_prompt_and_train_eos(tok) -> None:  # type: ignore[no-untyped-def]
    tmpl = PromptTemplate()
    ex = tokenize(Record("blue mug", "A blue mug."), tmpl, tok, 256)
    prompt_len = len(tok(tmpl.render("blue mug"))["input_ids"])
    assert ex.labels[:prompt_len] == [IGNORE] * prompt_len
    assert ex.labels[prompt_len:] == ex.input_ids[prompt_len:]
    assert ex.labels[-1] == tok.eos_token_id
    assert tok.decode(ex.input_ids[prompt_len:-1]) == "A blue mug."


def test_pad_is_made_distinct_from_eos() -> None:
    t = tiny.build_tokenizer()
    t.pad_token = t.eos_token  # what SmolLM2 ships with
    set_training_pad(t)
    assert t.pad_token_id != t.eos_token_id
    assert t.pad_token == "<|endoftext|>"
    assert len(t) == len(tiny.build_tokenizer())  # nothing added to the vocab


def test_prepare_counts_and_d001_on_a_small_set(tmp_path: Path, tok) -> None:  # type: ignore[no-untyped-def]
    rows = toy_records(40)
    rows += [{"title": "", "content": "x"}, {"title": "t", "content": "  "}, dict(rows[0])]
    data = prepare_data(write_jsonl(tmp_path / "d.jsonl", rows), tok, PromptTemplate(),
                        eval_share=0.25, seed=3)
    s = data.summary
    assert (s.read, s.used, s.kept) == (43, 43, 40)
    assert s.dropped["empty-title"] == s.dropped["empty-description"] == 1
    assert s.dropped["duplicate"] == 1
    assert (s.train_size, s.eval_size) == (30, 10)
    assert _status(data.checks, "D001") == "warn"
    assert {_status(data.checks, c) for c in ("D002", "D003", "D004")} == {"pass"}


def test_d001_passes_with_enough_examples(tmp_path: Path, tok) -> None:  # type: ignore[no-untyped-def]
    data = prepare_data(write_jsonl(tmp_path / "d.jsonl", toy_records(130)), tok,
                        PromptTemplate(), eval_share=0.1)
    assert _status(data.checks, "D001") == "pass"


def test_records_more_than_file_uses_all_with_a_note(tmp_path: Path, tok) -> None:  # type: ignore[no-untyped-def]
    path = write_jsonl(tmp_path / "d.jsonl", toy_records(12))
    data = prepare_data(path, tok, PromptTemplate(), records=500)
    assert data.summary.used == 12
    assert "more than the 12 records" in data.summary.notes[0]
    assert prepare_data(path, tok, PromptTemplate(), records=5).summary.used == 5


def test_d002_warns_when_some_descriptions_are_truncated_away(tmp_path: Path, tok) -> None:  # type: ignore[no-untyped-def]
    rows = toy_records(20)
    rows[0]["title"] = "very long title " * 20
    plen = len(tok(PromptTemplate().render(rows[1]["title"]))["input_ids"])
    data = prepare_data(write_jsonl(tmp_path / "d.jsonl", rows), tok, PromptTemplate(),
                        max_length=plen + 40, eval_share=0.0)
    assert data.summary.dropped["truncated"] == 1
    assert _status(data.checks, "D002") == "warn"


def test_d002_all_truncated_is_an_error(tmp_path: Path, tok) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FtdiagError, match="no training examples left"):
        prepare_data(write_jsonl(tmp_path / "d.jsonl", toy_records(10)), tok, PromptTemplate(),
                     max_length=10)
    summary = _summary()
    summary.dropped["truncated"] = 5
    assert _status(data_checks([], [], summary, 3), "D002") == "fail"


def test_d003_when_eos_falls_beyond_max_length(tmp_path: Path, tok) -> None:  # type: ignore[no-untyped-def]
    rows = toy_records(10)
    plen = max(len(tok(PromptTemplate().render(r["title"]))["input_ids"]) for r in rows)
    data = prepare_data(write_jsonl(tmp_path / "d.jsonl", rows), tok, PromptTemplate(),
                        max_length=plen + 2, eval_share=0.0)
    assert _status(data.checks, "D003") == "warn"
    assert data.summary.eos_cut == data.summary.train_size
    full = prepare_data(tmp_path / "d.jsonl", tok, PromptTemplate(), eval_share=0.0)
    assert _status(full.checks, "D003") == "pass"


def test_d004_fires_on_a_leaky_split(tok) -> None:  # type: ignore[no-untyped-def]
    tmpl = PromptTemplate()
    train = [tokenize(Record("red mug", "A red mug."), tmpl, tok, 256)]
    evals = [tokenize(Record("Red  Mug", "Another."), tmpl, tok, 256)]
    checks = data_checks(train, evals, _summary(), int(tok.eos_token_id))
    assert _status(checks, "D004") == "warn"


def test_wrong_field_lists_the_fields_found(tmp_path: Path, tok) -> None:  # type: ignore[no-untyped-def]
    path = write_jsonl(tmp_path / "d.jsonl", toy_records(5))
    with pytest.raises(FtdiagError) as exc:
        prepare_data(path, tok, PromptTemplate(), text_field="body")
    assert "content" in exc.value.hint and "title" in exc.value.hint


def test_sample_data_is_the_generators_output(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "sample.json"
    monkeypatch.setattr(sys, "argv", ["make_sample_data.py", "--out", str(out)])
    runpy.run_path(str(EXAMPLES / "make_sample_data.py"), run_name="__main__")
    assert out.read_bytes() == (EXAMPLES.parent / "src" / "ftdiag" / "samples"
                                / "amazon_titles_sample.json").read_bytes()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 1000
    assert set(rows[0]) == {"uid", "title", "content", "target_ind", "target_rel"}
    assert sum(1 for r in rows if not r["title"].strip()) >= 1
    assert sum(1 for r in rows if not r["content"].strip()) >= 1
    assert len({json.dumps(r) for r in rows}) < len(rows)  # exact duplicates included


def test_the_demo_finds_the_sample_data_shipped_in_the_package() -> None:
    from ftdiag.demo.run import find_sample_data

    path = find_sample_data()
    assert path.is_file() and path.parent.name == "samples"
