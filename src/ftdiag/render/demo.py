"""Render the demo: training, doctor, the in-place base bug beside the correct comparison."""

from __future__ import annotations

from rich.columns import Columns
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from ftdiag.demo.run import DemoResult
from ftdiag.render.doctor import print_doctor
from ftdiag.render.findings import checks_table

NEXT_COMMANDS = """\
# on your own adapter / run:
ftdiag check-adapter ADAPTER --base BASE        # static + runtime checks
ftdiag ab-test --adapter ADAPTER --titles FILE  # greedy base vs adapter
ftdiag loss-report RUN_DIR                      # did the loss go down?
ftdiag doctor RUN_DIR --report report.html      # everything, ranked causes
ftdiag train --data trn.json --out RUN          # a run that says if it learned
# and on what you ship (merged folder, GGUF, Modelfile, a served endpoint):
ftdiag check-export MERGED --adapter ADAPTER    # is the export the fine-tune?
ftdiag ab-test --endpoint URL --served-base B --served-adapter A --titles FILE"""


def _clip(text: str, n: int = 400) -> str:
    return text if len(text) <= n else text[:n] + "…"


def print_demo(result: DemoResult, console: Console) -> None:
    t = result.train
    console.rule("[bold]1. training")
    console.print(
        f"adapter: {t.adapter_dir}  steps {t.steps}  tokens {t.tokens}  "
        f"{t.seconds:.0f}s ({t.tokens_per_s:.0f} tok/s)  "
        f"loss {t.first_loss:.3f} → {t.last_loss:.3f}"
    )
    console.rule("[bold]2. doctor on the trained run")
    print_doctor(result.doctor, console)
    console.print(f"full report: {result.report_path}")
    bug = result.in_place_bug
    console.rule("[bold]3. the in-place base bug, reproduced")
    console.print(f"title: [bold]{bug.title}[/]")
    same = "[red]IDENTICAL[/]" if bug.naive_identical else "[green]different[/]"
    naive = Panel(
        Text.assemble(("'base' (the object PEFT mutated):\n", "bold"), _clip(bug.naive_base),
                      ("\n\n'fine-tuned':\n", "bold"), _clip(bug.naive_adapter)),
        title=f"what the notebook did → {same}", border_style="red",
    )
    right_same = bug.correct_base == bug.naive_adapter
    correct = Panel(
        Text.assemble(("base (disable_adapter()):\n", "bold"), _clip(bug.correct_base),
                      ("\n\nadapter:\n", "bold"), _clip(bug.naive_adapter)),
        title="the correct comparison → " + ("identical" if right_same else "different"),
        border_style="green",
    )
    console.print(Columns([naive, correct], equal=True, expand=True))
    title = "ftdiag.audit_model on the notebook's objects"
    console.print(checks_table(bug.audit.findings, title=title))
    console.rule("[bold]4. your turn")
    console.print(NEXT_COMMANDS, markup=False, highlight=False)
    console.print(demo_verdict(result))


def demo_verdict(result: DemoResult) -> Text:
    """The demo's last line, in words: was the in-place base bug reproduced and caught?"""
    doctor = result.doctor.report.verdict
    overall = result.report.verdict
    if result.bug_caught:
        rest = "" if overall == "pass" else f"; other checks: {overall.upper()} (see above)"
        return Text(f"demo: the in-place base bug was reproduced (the mutated 'base' gave the "
                    f"adapter's text) and caught (R004); doctor on the trained adapter: "
                    f"{doctor.upper()}{rest}", style="bold green" if overall != "fail"
                    else "bold red")
    what = ("reproduced but NOT caught" if result.in_place_bug.naive_identical
            else "not reproduced (the two 'arms' differed)")
    return Text(f"demo: FAIL, the in-place base bug was {what}; doctor on the trained adapter: "
                f"{doctor.upper()}", style="bold red")
