"""X005: an Ollama Modelfile that serves the base, another prompt template, or no EOS stop.

The TEMPLATE is rendered with the subset of Go templates Modelfiles use for completion
prompts ({{ .System }}, {{ .Prompt }}, {{ .Response }}, if/else/end, trim markers); templates
that iterate over .Messages are reported as not compared rather than guessed at. Parsing and
rendering are linear in the file (at most MAX_CONFIG_BYTES); a TEMPLATE over MAX_TEMPLATE is
reported, not rendered.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftdiag.errors import FtdiagError
from ftdiag.findings import Finding, finding, passed
from ftdiag.prompts.template import SYSTEM_PROMPT, PromptTemplate, recorded_template
from ftdiag.safeio import read_json, read_text

INSTRUCTIONS = {"FROM", "ADAPTER", "TEMPLATE", "SYSTEM", "PARAMETER", "MESSAGE", "LICENSE",
                "REQUIRES"}
PROBE_TITLE = "Steel bottle"
GO_SPACE = " \t\r\n"  # what Go's trim markers {{- and -}} remove
SHOWN = 200  # characters of a rendered TEMPLATE quoted in a finding
MAX_TEMPLATE = 1 << 20  # characters of TEMPLATE rendered (real ones are under 10 kB)


@dataclass
class Modelfile:
    """The instructions of a Modelfile that decide what Ollama serves."""

    path: Path
    from_ref: str = ""
    adapter_ref: str | None = None
    template: str | None = None
    system: str | None = None
    stops: list[str] = field(default_factory=list)


@dataclass
class ModelfileCheck:
    """The Modelfile's facts and what disagrees with the export and training."""

    path: str
    from_ref: str
    adapter_ref: str | None
    template: bool
    stops: list[str]
    eos: str | None
    training_template: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _unquote(value: str) -> str:
    if len(value) > 1 and value[0] == value[-1] == '"':
        if "\\" not in value:
            return value[1:-1]
        try:
            return str(json.loads(value))
        except ValueError:  # an escape JSON does not know: keep the text as written
            return value[1:-1]
    return value


def parse_modelfile(path: Path) -> Modelfile:
    """Read FROM, ADAPTER, TEMPLATE, SYSTEM and PARAMETER stop; other lines are ignored."""
    text = read_text(path)
    mf = Modelfile(path)
    pos = 0
    while pos < len(text):
        line_end = text.find("\n", pos)
        line_end = len(text) if line_end < 0 else line_end
        raw = text[pos:line_end]
        word = raw.split(maxsplit=1)[0] if raw.strip() else ""
        if not word or word.startswith("#") or word.upper() not in INSTRUCTIONS:
            pos = line_end + 1
            continue
        rest_start = pos + raw.index(word) + len(word)
        rest = text[rest_start:line_end].strip()
        if rest.startswith('"""'):
            start = text.index('"""', rest_start) + 3
            end = text.find('"""', start)
            if end < 0:
                raise FtdiagError(f"cannot parse Modelfile {path}: unterminated \"\"\" block")
            value = text[start:end]
            nl = text.find("\n", end + 3)
            pos = len(text) if nl < 0 else nl + 1
        else:
            value, pos = _unquote(rest), line_end + 1
        _apply(mf, word.upper(), value)
    if not mf.from_ref:
        raise FtdiagError(f"Modelfile {path} has no FROM line")
    return mf


def _apply(mf: Modelfile, word: str, value: str) -> None:
    if word == "FROM":
        mf.from_ref = value.strip()
    elif word == "ADAPTER":
        mf.adapter_ref = value.strip()
    elif word == "TEMPLATE":
        mf.template = value
    elif word == "SYSTEM":
        mf.system = value
    elif word == "PARAMETER":
        name, _, arg = value.strip().partition(" ")
        if name.lower() == "stop":
            mf.stops.append(_unquote(arg.strip()))


def render_go(template: str, values: dict[str, str]) -> str | None:
    """Render a simple Go text/template; None when it uses anything beyond fields and if/else.

    One pass with str.find, so time is linear in the template (regexes over `{{` and
    whitespace were quadratic: a 400 kB TEMPLATE took 5 s, 10 MB ran for minutes).
    """
    out: list[str] = []
    stack: list[list[bool]] = []  # [branch active, some branch taken]
    inactive = 0  # frames of `stack` whose branch is not taken
    pos, trim_next = 0, False
    while (start := template.find("{{", pos)) >= 0 and (end := template.find("}}", start)) >= 0:
        text, action = template[pos:start], template[start + 2:end]
        pos = end + 2
        if trim_next:
            text = text.lstrip(GO_SPACE)
        if action[:1] == "-" and action[1:2] in tuple(GO_SPACE):
            text, action = text.rstrip(GO_SPACE), action[1:]
        trim_next = action[-1:] == "-" and action[-2:-1] in tuple(GO_SPACE)
        action = (action[:-1] if trim_next else action).strip()
        if not inactive:
            out.append(text)
        if action.startswith("/*"):
            continue
        if (field_m := re.fullmatch(r"\.(\w+)", action)) is not None:
            if not inactive:
                out.append(values.get(field_m.group(1), ""))
        elif (cond := re.fullmatch(r"if\s+\.(\w+)", action)) is not None:
            taken = bool(values.get(cond.group(1)))
            stack.append([taken, taken])
            inactive += not taken
        elif action == "else" and stack:
            inactive -= not stack[-1][0]
            stack[-1][0] = not stack[-1][1]
            inactive += not stack[-1][0]
        elif action == "end" and stack:
            inactive -= not stack.pop()[0]
        else:
            return None
    rest = template[pos:]
    if not inactive:
        out.append(rest.lstrip(GO_SPACE) if trim_next else rest)
    return "".join(out)


def training_prompt(adapter_dir: Path, title: str) -> tuple[str | None, str]:
    """The prompt the adapter was trained on for `title`, and where the template came from."""
    recorded = recorded_template(adapter_dir)
    tpl = recorded or PromptTemplate()
    if tpl.is_chat:
        return None, "recorded chat template"
    return tpl.render(title), tpl.source


def eos_text(*dirs: Path | None) -> str | None:
    """The EOS token text from the adapter's (else the base's) tokenizer_config.json."""
    for d in dirs:
        if d is None or not (d / "tokenizer_config.json").is_file():
            continue
        config = read_json(d / "tokenizer_config.json")
        eos: Any = config.get("eos_token") if isinstance(config, dict) else None
        if isinstance(eos, dict):
            eos = eos.get("content")
        if isinstance(eos, str) and eos:
            return eos
    return None


def resolve_ref(ref: str | None, modelfile: Path) -> Path | None:
    """A FROM/ADAPTER value as a local path (relative to the Modelfile), None for a model name."""
    if not ref:
        return None
    p = Path(os.path.expanduser(ref))
    p = p if p.is_absolute() else modelfile.parent / p
    return p if p.exists() else None


def same(a: Path | None, b: Path) -> bool:
    return a is not None and b.exists() and os.path.samefile(a, b)


def check_modelfile(modelfile: Path, export: Path, kind: str, adapter_dir: Path,
                    base_dir: Path | None) -> tuple[ModelfileCheck, Finding]:
    """X005: what the Modelfile serves, its TEMPLATE and its stop words."""
    mf = parse_modelfile(modelfile)
    eos = eos_text(adapter_dir, base_dir)
    expected, source = training_prompt(adapter_dir, PROBE_TITLE)
    check = ModelfileCheck(str(modelfile), mf.from_ref, mf.adapter_ref, mf.template is not None,
                           mf.stops, eos, source)
    frm, adp = resolve_ref(mf.from_ref, modelfile), resolve_ref(mf.adapter_ref, modelfile)
    if kind == "lora-gguf":
        if mf.adapter_ref is None:
            check.problems.append(f"no ADAPTER: Ollama serves FROM {mf.from_ref} alone, "
                                  f"not {export.name}")
        elif not same(adp, export):
            check.problems.append(f"ADAPTER {mf.adapter_ref} is not the checked {export.name}")
    elif mf.adapter_ref is None and not same(frm, export):
        check.problems.append(f"no ADAPTER and FROM {mf.from_ref} is not the merged export "
                              f"{export}: Ollama serves it without the fine-tune")
    elif mf.adapter_ref is not None and same(frm, export):
        check.problems.append(f"ADAPTER {mf.adapter_ref} on top of the merged export applies "
                              "the update twice")
    _template_problems(mf, expected, check)
    if eos is None:
        check.notes.append("EOS text unknown (no tokenizer_config.json beside adapter or base)")
    elif eos not in mf.stops:
        check.problems.append(f"no PARAMETER stop \"{eos}\" (the EOS the adapter learned to end "
                              "with): generation runs on")
    return check, _finding(check)


def _template_problems(mf: Modelfile, expected: str | None, check: ModelfileCheck) -> None:
    if mf.template is None:
        check.problems.append("no TEMPLATE: Ollama wraps prompts in the FROM model's default "
                              "template, not the training prompt")
        return
    if expected is None:
        check.notes.append("training used a chat template: TEMPLATE not compared")
        return
    if len(mf.template) > MAX_TEMPLATE:
        check.problems.append(f"TEMPLATE is {len(mf.template):,} characters, more than the "
                              f"{MAX_TEMPLATE:,} ftdiag renders: not compared with the "
                              f"{len(expected)}-character training prompt")
        return
    systems = [s for s in (mf.system, SYSTEM_PROMPT, "") if s is not None]
    renders = [render_go(mf.template, {"System": s, "Prompt": p, "Response": ""})
               for s in systems for p in (PROBE_TITLE, f"Title: {PROBE_TITLE}")]
    if any(r is None for r in renders):
        check.notes.append("TEMPLATE uses constructs beyond .System/.Prompt/if: compare it "
                           "with the training template by hand")
    elif expected not in renders:
        got = renders[0] or ""
        shown = repr(got) if len(got) <= SHOWN else \
            f"{got[:SHOWN]!r}… ({len(got):,} characters)"
        check.problems.append(f"TEMPLATE renders {shown}, the training prompt "
                              f"({check.training_template}) is {expected!r}")


def _finding(c: ModelfileCheck) -> Finding:
    if c.problems:
        return finding("X005", "; ".join(c.problems),
                       hint="FROM the merged export (or FROM the base with ADAPTER the LoRA "
                            "GGUF), TEMPLATE rendering the training prompt, PARAMETER stop "
                            "with the EOS text", problems=c.problems, notes=c.notes)
    if c.notes:
        return finding("X005", "; ".join(c.notes), status="info", notes=c.notes)
    f = passed("X005", f"serves {c.adapter_ref or c.from_ref}, TEMPLATE renders the training "
                       f"prompt, stop {c.eos!r}")
    f.check = "Modelfile serves the fine-tune"
    return f
