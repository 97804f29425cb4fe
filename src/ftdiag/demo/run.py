"""`demo`: train on the embedded model, run doctor, then reproduce and catch the in-place base bug.

The original report's notebook compared "base" and "fine-tuned" using the base object that
`PeftModel.from_pretrained` had mutated in place, so both arms ran the adapter. The demo does
exactly that, shows the identical outputs, and shows ftdiag flagging it (R004, B001) next to
the correct comparison through `disable_adapter()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftdiag.doctor.run import DoctorResult, run_doctor
from ftdiag.errors import FtdiagError
from ftdiag.findings import Details, Finding, Report, finding
from ftdiag.model.load import EMBEDDED_NAME, cache_dir
from ftdiag.progress import ProgressFn, StageFn

SAMPLE_DATA = "amazon_titles_sample.json"


@dataclass(frozen=True)
class DemoPlan:
    """How much to train: the full demo (a few minutes) or --fast (about a minute)."""

    records: int
    epochs: float
    max_steps: int
    lr: float
    batch_size: int
    doctor_titles: int
    max_new_tokens: int


FULL = DemoPlan(records=240, epochs=2.0, max_steps=60, lr=1e-3, batch_size=4,
                doctor_titles=8, max_new_tokens=96)
FAST = DemoPlan(records=48, epochs=1.0, max_steps=6, lr=3e-3, batch_size=4,
                doctor_titles=2, max_new_tokens=48)


@dataclass
class InPlaceBaseBug:
    """The original report's comparison (mutated base object) next to the correct one."""

    title: str
    naive_base: str
    naive_adapter: str
    correct_base: str
    audit: Report

    @property
    def naive_identical(self) -> bool:
        return self.naive_base == self.naive_adapter


@dataclass
class DemoResult:
    workdir: Path
    data: Path
    train: Any
    doctor: DoctorResult
    in_place_bug: InPlaceBaseBug
    report: Report = field(default_factory=lambda: Report("demo"))

    @property
    def report_path(self) -> Path:
        """Where `ftdiag demo` writes doctor's HTML report."""
        return self.workdir / "doctor-report.html"

    @property
    def bug_caught(self) -> bool:
        """The notebook's comparison gave identical texts, and the audit flagged it (R004)."""
        return self.in_place_bug.naive_identical and "R004" in self.in_place_bug.audit.codes()


def find_sample_data() -> Path:
    """The sample dataset shipped inside the package (ftdiag/samples/)."""
    path = Path(__file__).resolve().parents[1] / "samples" / SAMPLE_DATA
    if not path.is_file():
        raise FtdiagError("sample dataset not found", hint=f"expected {path}; reinstall ftdiag")
    return path


def run_demo(fast: bool = False, workdir: Path | None = None, stage: StageFn | None = None,
             progress: ProgressFn | None = None) -> DemoResult:
    """Train → doctor → the in-place base bug, on the embedded SmolLM2-135M."""
    from ftdiag.training.recipe import TrainConfig, train

    plan = FAST if fast else FULL
    say = stage or (lambda _m: None)
    workdir = workdir or cache_dir() / ("demo-fast" if fast else "demo")
    run_dir = workdir / "run"
    data = find_sample_data()
    say(f"training LoRA on {EMBEDDED_NAME} ({plan.records} records, ≤{plan.max_steps} steps)")
    trained = train(TrainConfig(
        data=data, out=run_dir, base=EMBEDDED_NAME, records=plan.records, epochs=plan.epochs,
        max_steps=plan.max_steps, lr=plan.lr, batch_size=plan.batch_size, force=True,
        eval_steps=max(plan.max_steps // 4, 3),
    ), progress=(lambda s: progress(s.step, s.max_steps)) if progress else None)
    say("doctor")
    doc = run_doctor(run_dir, n=plan.doctor_titles, max_new_tokens=plan.max_new_tokens,
                     stage=say, progress=progress)
    say("reproducing the in-place base bug (comparing against the mutated base object)")
    bug = reproduce_in_place_bug(run_dir, doc, plan.max_new_tokens)
    result = DemoResult(workdir, data, trained, doc, bug)
    result.report = demo_report(result)
    return result


def reproduce_in_place_bug(run_dir: Path, doc: DoctorResult, max_new_tokens: int) -> InPlaceBaseBug:
    """Do what the original report's notebook did, then audit it with ftdiag."""
    import torch
    from peft import PeftModel

    from ftdiag.adapters.runtime import audit_model
    from ftdiag.model.load import load_base
    from ftdiag.prompts.template import load_template, recorded_template

    loaded = load_base(EMBEDDED_NAME)
    base_model, tok = loaded.model, loaded.tokenizer
    adapter_dir = doc.adapter_dir or run_dir
    ft_model = PeftModel.from_pretrained(base_model, str(adapter_dir))  # mutates base_model
    ft_model.eval()
    title = _demo_title(doc)
    template = recorded_template(adapter_dir) or load_template()
    inputs = tok(template.render(title, tok), return_tensors="pt")

    def greedy(model: Any) -> str:
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                 num_beams=1, pad_token_id=tok.pad_token_id)
        return str(tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))

    naive_base, naive_adapter = greedy(base_model), greedy(ft_model)
    with ft_model.disable_adapter():
        correct_base = greedy(ft_model)
    audit = audit_model(ft_model, base=base_model, tokenizer=tok, adapter_dir=adapter_dir)
    if naive_base == naive_adapter:
        audit.add(finding("B001", "the notebook's 'base' and 'fine-tuned' texts are identical: "
                          "both ran the adapter", title=title))
    return InPlaceBaseBug(title, naive_base, naive_adapter, correct_base, audit)


def _demo_title(doc: DoctorResult) -> str:
    ab = doc.sections.ab
    if ab is not None and ab.rows:
        return ab.rows[0].title
    return "Stainless Steel Insulated Water Bottle, 750 ml"


@dataclass
class DemoDetails(Details):
    """The demo report's details; `serve` is set when `--serve` ran (url, merged folder)."""

    doctor_verdict: str
    in_place_bug_codes: list[str]
    workdir: str
    serve: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if self.serve is None:
            del d["serve"]
        return d


def demo_report(result: DemoResult) -> Report:
    """The demo passes when doctor passes the trained adapter and flags the in-place base bug."""
    rep = Report("demo")
    doc_v = result.doctor.report.verdict
    rep.add(Finding("B001", "fail" if doc_v == "fail" else "pass",
                    f"doctor verdict on the trained adapter: {doc_v}",
                    check="doctor passes the trained adapter"))
    codes = result.in_place_bug.audit.codes()
    caught = "R004" in codes
    msg = (f"the notebook's comparison flagged: {', '.join(sorted(codes & {'R004', 'B001'}))}"
           if caught else "the notebook's mutated-base comparison was NOT flagged")
    rep.add(Finding("R004", "pass" if caught else "fail", msg,
                    check="the in-place base bug is caught"))
    rep.details = DemoDetails(doc_v, sorted(codes), str(result.workdir))
    return rep
