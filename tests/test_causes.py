"""Findings map to the original report's causes, root causes and failures first."""

from __future__ import annotations

from ftdiag.doctor.causes import CAUSES, rank_causes
from ftdiag.findings import CODES, finding, passed


def test_every_cause_code_exists() -> None:
    for cause in CAUSES:
        assert set(cause.codes) <= set(CODES), cause.key


def test_untrained_adapter_and_flat_loss_rank_first_with_next_steps() -> None:
    ranked = rank_causes([
        finding("B001", "identical"),
        finding("L002", "flat"),
        finding("L008", "no eval"),
        finding("A003", "zero B"),
        passed("R001", "ok"),
    ])
    assert [r.cause.key for r in ranked] == ["adapter-untrained", "no-convergence",
                                             "identical-outputs"]
    assert all(r.cause.next_step for r in ranked)
    assert ranked[0].evidence == ["A003: zero B"]


def test_warnings_rank_after_failures() -> None:
    ranked = rank_causes([finding("L006", "12 steps"), finding("R004", "mutated")])
    assert [r.severity for r in ranked] == ["fail", "warn"]
    assert ranked[0].cause.key == "adapter-not-applied"
    assert rank_causes([passed("A003", "fine")]) == []
