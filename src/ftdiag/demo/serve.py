"""`ftdiag demo --serve`: serve the demo's merged model and check what the server answers.

The trained adapter is merged (`ftdiag merge`), `transformers serve` is started on this machine,
and `ab-test --endpoint` runs twice on the same titles: the merged export under its own name
(it must reproduce the local adapter), then a deployment whose fine-tune name points at the base
weights (it must fail with E001/E002). The local reference is computed once for both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ftdiag.abtest.client import EndpointConfig
from ftdiag.abtest.served import EndpointResult, EndpointSpec, run_endpoint_test
from ftdiag.demo import local_server
from ftdiag.errors import FtdiagError
from ftdiag.findings import Report, finding, passed
from ftdiag.progress import ProgressFn, StageFn
from ftdiag.prompts.records import Record


@dataclass
class ServeDemo:
    """Both served runs and the demo's verdict on them."""

    url: str
    merged: Path
    healthy: EndpointResult
    wrong: EndpointResult
    report: Report = field(default_factory=lambda: Report("demo"))


def run_serve_demo(adapter_dir: Path, base: str, records: list[Record], workdir: Path, *,
                   max_new_tokens: int = 48, stage: StageFn | None = None,
                   progress: ProgressFn | None = None) -> ServeDemo:
    """Merge, serve, and run ab-test --endpoint on the right and on a wrong model name."""
    from ftdiag.export.merge import merge_adapter
    from ftdiag.model.load import resolve_model_dir

    say = stage or (lambda _m: None)
    base_dir = resolve_model_dir(base)
    merged = workdir / "served" / "merged"
    say("merging the adapter for serving (fp32)")
    merge = merge_adapter(adapter_dir, base, merged, force=True)
    if merge.verdict == "fail":
        raise FtdiagError(f"merging {adapter_dir} failed: "
                          f"{'; '.join(f.message for f in merge.findings)}")
    wrong = workdir / "served" / "finetune-v1"  # the fine-tune's name, deployed with base weights
    if wrong.is_symlink() or wrong.exists():
        wrong.unlink()
    wrong.symlink_to(base_dir.resolve(), target_is_directory=True)
    say("starting transformers serve")
    server = local_server.start(workdir / "served" / "serve.log")
    try:
        cfg = EndpointConfig(url=server.url, max_tokens=max_new_tokens, concurrency=8)
        spec = EndpointSpec(cfg, str(base_dir), str(merged), adapter_dir=adapter_dir, base=base)
        say(f"ab-test --endpoint: served base vs the merged export ({len(records)} titles)")
        healthy = run_endpoint_test(spec, records, stage=say, progress=progress)
        spec_wrong = EndpointSpec(cfg, str(base_dir), str(wrong), adapter_dir=adapter_dir,
                                  base=base)
        say("ab-test --endpoint: the fine-tune's name pointing at the base weights")
        broken = run_endpoint_test(spec_wrong, records, stage=say, progress=progress,
                                   reference=healthy.reference)
    finally:
        local_server.stop(server)
    result = ServeDemo(server.url, merged, healthy, broken)
    result.report = serve_demo_report(result)
    return result


def serve_demo_report(result: ServeDemo) -> Report:
    """Passes when the export passes E001-E004 and the wrong name is caught by E001 or E002."""
    rep = Report("demo")
    bad = {c.code for c in result.healthy.report.checks
           if c.code.startswith("E") and c.status == "fail"}
    rep.add(passed("E002", "the served merged export reproduces the local adapter")
            if not bad else finding("E002", f"the served merged export fails {sorted(bad)}"))
    caught = {c.code for c in result.wrong.report.findings} & {"E001", "E002"}
    rep.add(passed("E001", f"the wrong model name is caught: {', '.join(sorted(caught))}")
            if caught else finding("E001", "the wrong model name was NOT caught"))
    return rep
