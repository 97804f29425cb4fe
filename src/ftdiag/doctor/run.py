"""`doctor`: loss-report → check-adapter → ab-test → merged check on one run dir, one model load.

Ends with the original report's success criteria as a checklist and the most likely causes, ranked.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ftdiag.abtest.local import ABConfig, ABResult, AbSummary, run_ab_test
from ftdiag.doctor.causes import RankedCause, rank_causes
from ftdiag.errors import FtdiagError
from ftdiag.findings import Details, Finding, Report, finding, passed
from ftdiag.loss.details import LossAnalysis
from ftdiag.progress import ProgressFn, StageFn
from ftdiag.prompts.records import run_titles
from ftdiag.runmeta import read_meta

log = logging.getLogger(__name__)



@dataclass
class Criterion:
    """One of the original report's success criteria, judged with evidence."""

    name: str
    ok: bool | None  # None: could not be judged (layer skipped)
    evidence: str


@dataclass
class DoctorSections:
    """Each layer's own result, as far as doctor got (None: the layer did not run)."""

    loss: Report | None = None
    check: Report | None = None  # static, then runtime checks (check-adapter's shape)
    ab: ABResult | None = None

    def to_dict(self) -> dict[str, Any]:
        """--json: each section that ran as its command's report document."""
        parts = {"loss": self.loss, "check": self.check,
                 "ab": self.ab.report if self.ab is not None else None}
        return {k: rep.to_dict() for k, rep in parts.items() if rep is not None}


@dataclass
class DoctorDetails(Details):
    """doctor's report details: what it judged, the ranked causes and each layer's report."""

    run_dir: Path
    adapter_dir: Path | None
    criteria: list[Criterion]
    causes: list[RankedCause]
    sections: DoctorSections

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_dir": str(self.run_dir),
            "adapter_dir": str(self.adapter_dir) if self.adapter_dir else None,
            "criteria": [asdict(c) for c in self.criteria],
            "causes": [{"rank": c.rank, "cause": c.cause.title, "key": c.cause.key,
                        "severity": c.severity, "evidence": c.evidence,
                        "next_step": c.cause.next_step} for c in self.causes],
            "sections": self.sections,
        }
        if self.sections.ab is not None:
            out["ab"] = {"summary": self.sections.ab.summary}
        return out


@dataclass
class DoctorResult:
    """Everything doctor found: one combined report plus each layer's own result."""

    report: Report
    run_dir: Path
    adapter_dir: Path | None
    criteria: list[Criterion] = field(default_factory=list)
    causes: list[RankedCause] = field(default_factory=list)
    sections: DoctorSections = field(default_factory=DoctorSections)


def find_adapter_dir(run_dir: Path) -> Path | None:
    """The final adapter of a run: top level, else `adapter/`/`final/`, else newest checkpoint."""
    for cand in (run_dir, run_dir / "adapter", run_dir / "final"):
        if (cand / "adapter_config.json").is_file():
            return cand
    checkpoints = sorted(
        (p for p in run_dir.glob("checkpoint-*") if (p / "adapter_config.json").is_file()),
        key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1,
    )
    return checkpoints[-1] if checkpoints else None


def run_doctor(run_dir: str | Path, base: str | None = None, titles: str | Path | None = None,
               n: int = 16, max_new_tokens: int = 96, stage: StageFn | None = None,
               progress: ProgressFn | None = None,
               revision: str | None = None, runtime: str | None = None,
               dtype: str = "auto") -> DoctorResult:
    """Run every layer that applies to `run_dir`, reusing one loaded base+adapter.

    runtime: the serving runtime for layer T (check-adapter --runtime), if any;
    dtype: the model's dtype, as ab-test's --dtype (auto: bf16 where the CPU computes it).
    """
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise FtdiagError(f"run dir not found: {run_dir}" if not run_dir.exists()
                          else f"{run_dir} is a file, expected a training output dir")
    say = stage or (lambda _msg: None)
    report = Report("doctor")
    result = DoctorResult(report, run_dir, find_adapter_dir(run_dir))
    meta = read_meta(run_dir)
    base = base or meta.get("base")
    revision = revision or meta.get("revision")

    say("loss-report")
    loss = _loss_layer(run_dir)
    result.sections.loss = loss
    _absorb(report, loss, "L")

    say("check-adapter")
    adapter_dir = result.adapter_dir
    if adapter_dir is None:
        report.add(finding("A001", f"no adapter_config.json in {run_dir} or its checkpoints"))
        report.layers_skipped.update({"R": "no adapter", "G": "no adapter"})
        return _finish(result)
    from ftdiag.adapters.check import details_of, runtime_layer, target_layer
    from ftdiag.adapters.consistency import try_load_adapter
    from ftdiag.adapters.preflight import preflight, resolve_base
    from ftdiag.adapters.runtime import audit_runtime
    from ftdiag.model.dtype import choose_dtype
    from ftdiag.model.load import load_base, pick_device_dtype
    from ftdiag.timing import phase

    with phase("load"):
        device, _ = pick_device_dtype()
        choice = choose_dtype(dtype, device)  # an unknown name fails before anything loads
    pre = preflight(adapter_dir, base, base_required=False, revision=revision)
    target_layer(pre.static, pre, runtime)
    if pre.static.verdict == "fail":  # doctor stops at the first failing layer
        result.sections.check = pre.static
        _absorb(report, pre.static, "S")
        report.layers_skipped.update({"R": "static layer failed", "G": "static layer failed"})
        return _finish(result)

    say("loading base + adapter (once)")
    loaded = load_base(pre.base_dir or resolve_base(adapter_dir, base, revision), device,
                       choice.torch_dtype)
    model, refused = try_load_adapter(loaded, adapter_dir)
    if refused is not None:  # A011: PEFT refuses the adapter for this base
        pre.static.add(refused)
        result.sections.check = pre.static
        _absorb(report, pre.static, "S")
        report.layers_skipped.update({"R": "PEFT cannot load the adapter (A011)",
                                      "G": "PEFT cannot load the adapter (A011)"})
        return _finish(result)
    merged = run_dir / "merged"
    cfg = ABConfig(adapter_dir=adapter_dir, base=str(loaded.model_dir),
                   merged_dir=merged if (merged / "config.json").is_file() else None,
                   max_new_tokens=max_new_tokens)
    audit = audit_runtime(model, None, loaded.tokenizer, None, adapter_dir,
                          settings=cfg.settings(), to_eval=True)
    details_of(pre.static).base_dir = str(loaded.model_dir)
    check = runtime_layer(pre.static, audit.report)
    result.sections.check = check
    _absorb(report, check, "SR")

    records = run_titles(run_dir, Path(titles) if titles else None, n)
    if not records:
        report.layers_skipped["G"] = "no titles: pass --titles FILE"
        return _finish(result)
    say(f"ab-test on {len(records)} titles")
    ab = run_ab_test(cfg, records, model=model, tokenizer=loaded.tokenizer, progress=progress,
                     audit=audit, dtype=choice)
    result.sections.ab = ab
    _absorb(report, ab.report, "G")
    report.add(_improvement_check(ab.summary))
    return _finish(result)


def _loss_layer(run_dir: Path) -> Report:
    from ftdiag.loss.analysis import loss_report

    try:
        return loss_report([run_dir])
    except FtdiagError as exc:
        rep = Report("loss-report")
        rep.add(finding("L001", exc.message,
                        hint="doctor reads RUN_DIR's trainer_state.json, trainer_log.jsonl, "
                             "TensorBoard or W&B run"))
        return rep


def _absorb(report: Report, part: Report, layers: str) -> None:
    """Append a layer's checks (a code passed twice is kept once) and its layer bookkeeping."""
    seen = {(c.code, c.status) for c in report.checks if c.status == "pass"}
    report.add(*(c for c in part.checks if c.status != "pass" or (c.code, c.status) not in seen))
    for layer in part.layers_run or list(layers):
        if layer not in report.layers_run:
            report.layers_run.append(layer)
    report.layers_skipped.update(part.layers_skipped)


def _improvement_check(summary: AbSummary) -> Finding:
    """B005: the adapter should be closer to the references than the base (ROUGE-L, NLL)."""
    rouge, nll = summary.rouge_l or {}, summary.ref_nll or {}
    if "adapter" not in rouge or "adapter" not in nll:
        return Finding("B005", "skip", "no references to compare against")
    better_rouge = rouge["adapter"] > rouge["base"]
    better_nll = nll["adapter"] < nll["base"]
    msg = (f"ROUGE-L base {rouge['base']:.3f} → adapter {rouge['adapter']:.3f}; "
           f"reference NLL base {nll['base']:.3f} → adapter {nll['adapter']:.3f}")
    if better_rouge and better_nll:
        return passed("B005", msg, rouge_l=rouge, ref_nll=nll)
    return finding("B005", msg, rouge_l=rouge, ref_nll=nll,
                   hint="train longer or on more records; check the template matches training")


def _finish(result: DoctorResult) -> DoctorResult:
    result.criteria = judge_criteria(result)
    result.causes = rank_causes(result.report.findings)
    result.report.details = DoctorDetails(result.run_dir, result.adapter_dir, result.criteria,
                                          result.causes, result.sections)
    return result


def _codes(part: Report | None) -> set[str]:
    return set() if part is None else {f.code for f in part.findings
                                        if f.status in ("fail", "warn")}


def judge_criteria(result: DoctorResult) -> list[Criterion]:
    """The original report's 4 success criteria, each ✓/✗ with evidence (None when not judged)."""
    s = result.sections
    crit: list[Criterion] = []
    check = s.check
    if check is None or "R" not in check.layers_run:
        crit.append(Criterion("PEFT active in the loaded model", None, "runtime layer not run"))
    else:
        bad = _codes(check) & {"R001", "R002", "R003", "R004", "R006"}
        crit.append(Criterion("PEFT active in the loaded model", not bad,
                              "R001–R004, R006 clean: adapter loaded, active, eval mode"
                              if not bad else "findings: " + ", ".join(sorted(bad))))
    ab = s.ab
    if ab is None:
        crit.append(Criterion("outputs differ (greedy, fixed seed)", None, "generation not run"))
        crit.append(Criterion("adapter more detailed/specific", None, "generation not run"))
    else:
        sm = ab.summary
        differ = sm.n - sm.identical
        crit.append(Criterion("outputs differ (greedy, fixed seed)", differ > 0,
                              f"{differ}/{sm.n} titles differ between base and adapter"))
        crit.append(_detail_criterion(sm))
    loss = s.loss
    d = loss.details if loss is not None else None
    lost = _codes(loss) & {"L001", "L002", "L004", "L007"}
    rel = d.relative_decrease if isinstance(d, LossAnalysis) else None
    start = d.start_loss if isinstance(d, LossAnalysis) else None
    end = d.end_loss if isinstance(d, LossAnalysis) else None
    evidence = (f"loss {_f3(start)} → {_f3(end)} ({abs(rel):.0%} "
                f"{'decrease' if rel >= 0 else 'increase'})"
                if isinstance(rel, float) else "no loss figures")
    crit.append(Criterion("loss decreased during training",
                          not lost and isinstance(rel, float) and rel > 0,
                          evidence if not lost else f"{evidence}; " + ", ".join(sorted(lost))))
    return crit


def _f3(x: float | None) -> str:
    return f"{x:.3f}" if x is not None else "nan"


def _detail_criterion(sm: AbSummary) -> Criterion:
    length = sm.mean_new_tokens
    rouge, nll = sm.rouge_l or {}, sm.ref_nll or {}
    parts = [f"mean length {length.get('base', 0):.1f} → {length.get('adapter', 0):.1f} tokens"]
    runaway = sm.hit_max_share
    # Longer is the original report's criterion; a base that never stops is not "more detailed".
    ok = (length.get("adapter", 0) >= length.get("base", 0)
          or runaway.get("base", 0) > runaway.get("adapter", 0))
    if "adapter" in rouge:
        parts.append(f"ROUGE-L {rouge['base']:.3f} → {rouge['adapter']:.3f}")
        ok = ok and rouge["adapter"] > rouge["base"]
    if "adapter" in nll:
        parts.append(f"ref NLL {nll['base']:.3f} → {nll['adapter']:.3f}")
        ok = ok and nll["adapter"] < nll["base"]
    return Criterion("adapter more detailed/specific than base", ok, "; ".join(parts))
