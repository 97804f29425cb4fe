"""Map findings to likely causes, ranked, each with the next command to try."""

from __future__ import annotations

from dataclasses import dataclass

from ftdiag.findings import Finding


@dataclass(frozen=True)
class Cause:
    """One likely cause of "my adapter does nothing", the codes that point to it, what to try."""

    key: str
    title: str
    codes: tuple[str, ...]
    next_step: str


# Ordered root causes first: a broken or unapplied adapter explains everything downstream.
CAUSES: tuple[Cause, ...] = (
    Cause("adapter-broken", "the saved adapter is missing, empty, corrupt or NaN",
          ("A001", "A002", "A004"),
          "re-save the adapter from the trained model: model.save_pretrained(DIR); "
          "then `ftdiag check-adapter DIR`"),
    Cause("adapter-untrained", "the adapter was never trained (lora_B all zero, or unchanged "
          "by training, or no gradient reached it)",
          ("A003", "A010", "A015", "L009", "L010"),
          "check lr > 0 and that LoRA params require grad, then "
          "`ftdiag train --data FILE --out RUN --lr 2e-4`"),
    Cause("adapter-not-applied", "the adapter is not applied to the model you compare",
          ("R001", "R002", "R004", "R006", "A006", "A007", "A008", "A009"),
          "load with PeftModel.from_pretrained(base, DIR), compare against "
          "`with model.disable_adapter():` (never the mutated base object); "
          "`ftdiag ab-test --adapter DIR --titles FILE`"),
    Cause("no-convergence", "training did not converge: the loss did not go down",
          ("L002", "L004", "L007"),
          "raise the learning rate or train longer: `ftdiag train ... --lr 1e-3 --epochs 3`; "
          "check labels are not all masked (D002)"),
    Cause("lr-too-high", "learning rate too high: loss diverges or spikes",
          ("L003",), "lower the learning rate: `ftdiag train ... --lr 5e-5`"),
    Cause("dataset-too-small", "too few examples or optimizer steps to move the model",
          ("D001", "L006"),
          "use more records and epochs: `ftdiag train ... --records 1000 --epochs 3`"),
    Cause("update-too-small", "the LoRA update is too small relative to the base weights",
          ("A005", "R005"),
          "raise rank/alpha or lr: `ftdiag train ... --lora-r 32 --lora-alpha 64 --lr 5e-4`"),
    Cause("template-mismatch", "the prompt at inference differs from the training template",
          ("R010",), "use the training template: `ftdiag ab-test ... --template FILE` "
          "(ftdiag_meta.json records it)"),
    Cause("never-stops", "the model never learned to stop (EOS not trained, pad == eos)",
          ("R009", "D003", "B003", "D002"),
          "set a pad token distinct from eos before training; `ftdiag train` does this"),
    Cause("nondeterministic-comparison", "the comparison itself is noisy (sampling or train mode)",
          ("R003", "R008", "B004"),
          "call model.eval() and compare greedily: `ftdiag ab-test` does both"),
    Cause("overfitting", "the adapter overfits: eval loss rises",
          ("L005", "D004"), "fewer epochs or more data: `ftdiag train ... --epochs 1`"),
    Cause("merge-broken", "the merged model is not the adapter",
          ("B002", "R007"), "merge in fp32: `ftdiag merge --adapter DIR --out MERGED`"),
    Cause("identical-outputs", "base and adapter give the same text (symptom)",
          ("B001",), "see the causes above; if none fire, train longer or with a higher lr"),
)

_SEVERITY = {"fail": 0, "warn": 1, "info": 2}


@dataclass(frozen=True)
class RankedCause:
    rank: int
    cause: Cause
    evidence: list[str]
    severity: str


def rank_causes(findings: list[Finding]) -> list[RankedCause]:
    """Causes with at least one fail/warn finding, fails first, then in CAUSES order."""
    hits: list[tuple[int, int, Cause, list[Finding]]] = []
    for order, cause in enumerate(CAUSES):
        matched = [f for f in findings if f.code in cause.codes and f.status in ("fail", "warn")]
        if matched:
            worst = min(_SEVERITY[f.status] for f in matched)
            hits.append((worst, order, cause, matched))
    hits.sort(key=lambda h: (h[0], h[1]))
    return [
        RankedCause(i + 1, cause, [f"{f.code}: {f.message}" for f in matched],
                    "fail" if worst == 0 else "warn")
        for i, (worst, _, cause, matched) in enumerate(hits)
    ]
