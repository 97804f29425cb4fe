"""Finding codes (the public contract of ../shared/FAILURE_MODES.md), checks and reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from ftdiag._version import __version__

Status = Literal["pass", "info", "warn", "fail", "skip"]
FINDING_STATUSES = ("info", "warn", "fail")
SKIPPED = "skipped: "


@dataclass(frozen=True)
class CodeInfo:
    """One row of the finding-code table."""

    code: str
    severity: str  # default severity: fail / warn / info
    layer: str  # a key of LAYERS
    name: str
    title: str  # what a finding of this code found ("no trained LoRA layers in the model")
    proves: str = ""  # what the check proves when it passes ("adapter injected")
    meaning: str = ""  # what the code means and how it is detected (the docs' code table)

    def label(self, status: str) -> str:
        """A row's name: what it found when it is a finding, what it proves (or would) otherwise."""
        return self.title if status in FINDING_STATUSES else self.proves


def _c(code: str, sev: str, layer: str, name: str, title: str) -> CodeInfo:
    return CodeInfo(code, sev, layer, name, title, PROVES[code], MEANINGS[code])


# What each code means and how it is detected (the docs' code table, in the contract's words).
MEANINGS = {
    "A001": "no adapter_config.json, or no adapter_model.safetensors / .bin next to it",
    "A002": (
        "weights file holds no tensors, or tensors with 0 elements (e.g. a broken state_dict "
        "patch, ZeRO-3 partitioned save)"),
    "A003": (
        "every lora_B tensor is exactly zero: the adapter is a no-op (saved before training, "
        "frozen, or lr=0)"),
    "A004": "NaN or Inf in any adapter tensor",
    "A005": (
        "relative update ‖(α/r)·B·A‖ / ‖W‖ per adapted layer is below a threshold (default "
        "1e-4) for all/most layers: the adapter barely moves the model"),
    "A006": (
        "adapter tensor names do not map onto modules of the given base "
        "(prefix/wrapper/architecture mismatch): PEFT would leave those LoRA weights at init"),
    "A007": (
        "target_modules in adapter_config.json match no module of the base (or fewer than the"
        " adapter holds)"),
    "A008": (
        "tensor shapes disagree with the base (fail); the recorded base name/path or its "
        "weights fingerprint differs from the base given (warn)"),
    "A009": (
        "embedding/lm_head saved in the adapter, or the tokenizer, disagree with the base "
        "vocab size (added tokens not saved / base not resized)"),
    "A010": (
        "some adapted layers have lora_B all zero while others do not (e.g. gradient "
        "checkpointing cut the gradient to some layers)"),
    "A011": (
        "adapter_config.json disagrees with the weights it ships (r / rank_pattern vs tensor "
        "shapes, target_modules vs tensor names, alpha vs the implied scaling), or PEFT "
        "cannot load the adapter onto the base at all: the loader's reason is the evidence, "
        "never a skip inside a pass"),
    "A012": (
        "the adapter given is an earlier checkpoint-N of a run that has later checkpoints or "
        "a final adapter"),
    "A013": (
        "the adapter trains or saves embed_tokens / lm_head while the base ties them "
        "(tie_word_embeddings): on reload or merge one side's update is lost or doubled"),
    "A014": (
        "the adapter was trained against a quantized base (bnb / GPTQ / AWQ config recorded, "
        "or a name like *-bnb-4bit) and is now checked, merged or served at another precision"),
    "A015": (
        "training updated nothing although lora_B is not zero: the run's checkpoint-N "
        "adapters (and a final adapter of a later step) are bit-identical (a resumed or "
        "passed-in adapter left frozen)"),
    "R001": (
        "after loading, the model has no LoRA layers (e.g. loaded the base only, or a fresh "
        "`get_peft_model` with zero init)"),
    "R002": (
        "LoRA layers exist but are disabled, another adapter is active, or PEFT reports an "
        "\"irregular\" state"),
    "R003": (
        "model (or a dropout module) is in training mode during generation: outputs are not "
        "deterministic"),
    "R004": (
        "the object used as \"base\" carries LoRA layers (PEFT injects in place), so a base-vs-"
        "adapter comparison compares the adapter with itself"),
    "R005": (
        "on probe prompts the adapter changes next-token logits by less than a tolerance (max"
        " abs diff and KL reported): the adapter does nothing observable"),
    "R006": (
        "LoRA weights in the loaded model differ from the file on disk (keys dropped on load,"
        " or a new adapter was created instead of loaded)"),
    "R007": "merging into a 4/8-bit or half-precision base can round the update away",
    "R008": (
        "generation would sample (do_sample / temperature from generation_config.json): A/B "
        "differences may be chance"),
    "R009": (
        "pad_token == eos_token: a collator that masks pads also masks EOS, the model may "
        "never learn to stop"),
    "R010": "the prompt template used now differs from the one recorded at training time",
    "B001": (
        "base and adapter greedy outputs are identical on all (or ≥ the --max-identical share"
        " of) prompts"),
    "B002": (
        "merged model disagrees with base+adapter beyond tolerance (logit diff / first "
        "divergent token reported)"),
    "B003": "a large share of outputs hit max_new_tokens without EOS",
    "B004": (
        "batched greedy output differs from one-prompt-at-a-time output (padding side / "
        "masks)"),
    "B005": (
        "the adapter's outputs are not closer to the references than the base's (ROUGE-L and "
        "reference NLL)"),
    "E001": (
        "the served adapter's greedy outputs equal the served base's on all (or ≥ the --max-"
        "identical share of) titles"),
    "E002": (
        "the served \"adapter\" reproduces the local base, not the local adapter: the request "
        "never selected the adapter (wrong model name, adapter not loaded, unknown adapter id"
        " silently ignored)"),
    "E003": (
        "requests for the model name fail, or a server that routes by name does not list it "
        "(never on llama-server, which answers any name): the server's answer is the evidence"),
    "E004": (
        "the served adapter departs from the local adapter (first divergent token, share of "
        "titles) without being the base: template, stop tokens, precision or quantization of "
        "the export"),
    "E005": (
        "the served base arm reproduces the local adapter, or the server reports the adapter "
        "active for base requests (llama.cpp applies a `--lora` at its global scale to "
        "requests that do not set it)"),
    "X001": (
        "the adapted modules' weights in the merged/exported model equal the base's: the "
        "merge or conversion wrote the base"),
    "X002": (
        "per adapted module, (W_export − W_base) differs from (α/r)·B·A beyond tolerance "
        "(relative error, cosine): wrong scaling, another adapter, a partial merge"),
    "X003": (
        "in the saved dtype or quantization, a large share of the update's elements fall "
        "below half a unit in the last place of W: the save rounds the fine-tune away"),
    "X004": (
        "a LoRA GGUF disagrees with the PEFT adapter (alpha, rank, tensor count, "
        "architecture) or is not a LoRA adapter"),
    "X005": (
        "an Ollama Modelfile serves the base (no ADAPTER, FROM not a merged export), or its "
        "TEMPLATE / stop differ from the training template and EOS"),
    "X006": (
        "a merged folder still holds adapter_config.json / adapter_model.*: transformers re-"
        "attaches the adapter on load and applies the update twice"),
    "X007": (
        "config.json contradicts the weights: a tie flag over a distinct trained lm_head, "
        "lm_head missing or misnamed, architectures not the base's (fail); a "
        "quantization_config over plain 16/32-bit tensors (warn)"),
    "X008": (
        "the token that ends a trained turn (recorded template + EOS, or the chat template's "
        "turn end) is not among the export's EOS ids (generation_config.json, GGUF eos/eot)"),
    "T001": (
        "`--runtime NAME` builds another model class than the adapter was saved for (text-"
        "only keys against a `*ForConditionalGeneration` wrapper, or the reverse)"),
    "T002": (
        "the named runtime refuses or drops adapter modules (modules_to_save, a LoRA on a "
        "tied lm_head, an architecture it does not convert): the share of the update lost"),
    "T003": (
        "the named runtime scales or shapes the update unlike PEFT (rsLoRA as α/r, "
        "alpha_pattern / rank_pattern collapsed, DoRA or lora_bias refused or ignored): the "
        "served/trained scale per module"),
    "L001": "no readable loss records in the given log/run directory",
    "L002": "training loss shows no meaningful decrease from start to end",
    "L003": "loss rises or spikes (robust z-score / k× running median)",
    "L004": "NaN/Inf in loss or grad_norm",
    "L005": "eval loss rises while train loss keeps falling",
    "L006": (
        "fewer optimizer steps than a threshold (default 50): the adapter had little chance "
        "to move"),
    "L007": "loss exactly 0 (all labels masked or degenerate data)",
    "L008": "no eval loss logged: over/underfitting cannot be judged",
    "L009": (
        "after the first optimizer step no LoRA parameter has a non-zero, finite gradient "
        "(frozen adapter, gradient checkpointing without input grads, all labels masked)"),
    "L010": (
        "grad_norm is exactly 0 on all (or at least 90 % of) logged steps while a loss is "
        "logged: the optimizer moves nothing (L002 then names it)"),
    "D001": "few training examples remain after filtering (reports how many were dropped and why)",
    "D002": "examples whose completion tokens are all masked or truncated away (fail if all)",
    "D003": "EOS is not among the trained label tokens",
    "D004": "eval/test titles also appear in the training split",
}


# What each check proves when it passes: a passing row reads as the good news, not the fault.
PROVES = {
    "A001": "adapter files present",
    "A002": "adapter weights present",
    "A003": "lora_B trained (non-zero)",
    "A004": "adapter weights finite",
    "A005": "update large enough",
    "A006": "adapter keys map onto the base",
    "A007": "targets match base modules",
    "A008": "built for this base",
    "A009": "vocabulary sizes agree",
    "A010": "every adapted layer trained",
    "A011": "config matches the weights",
    "A012": "latest checkpoint of its run",
    "A013": "tied embeddings left alone",
    "A014": "trained on a full-precision base",
    "A015": "training changed the adapter",
    "R001": "adapter injected",
    "R002": "adapter active",
    "R003": "eval mode",
    "R004": "base arm clean",
    "R005": "adapter changes the logits",
    "R006": "loaded weights equal the file",
    "R007": "merge keeps the update",
    "R008": "greedy decoding",
    "R009": "pad token differs from eos",
    "R010": "template as in training",
    "B001": "outputs differ",
    "B002": "merged matches base+adapter",
    "B003": "outputs stop at EOS",
    "B004": "batched equals one at a time",
    "B005": "adapter closer to references",
    "E001": "served adapter differs from served base",
    "E002": "served adapter is not the base",
    "E003": "served models answer",
    "E004": "served adapter matches local adapter",
    "E005": "served base arm is the base",
    "X001": "export differs from base",
    "X002": "export delta matches the adapter",
    "X003": "update survives saved precision",
    "X004": "LoRA GGUF matches the adapter",
    "X005": "Modelfile serves the fine-tune",
    "X006": "export holds no adapter files",
    "X007": "export config matches its weights",
    "X008": "export stops where training stopped",
    "T001": "runtime builds the trained layout",
    "T002": "runtime applies every adapted module",
    "T003": "runtime scales as PEFT does",
    "L001": "loss log found",
    "L002": "loss decreased",
    "L003": "loss stable",
    "L004": "loss finite",
    "L005": "no overfitting",
    "L006": "enough optimizer steps",
    "L007": "loss non-zero",
    "L008": "eval loss logged",
    "L009": "LoRA gradients flow",
    "L010": "gradient norm non-zero",
    "D001": "enough examples",
    "D002": "labels trainable",
    "D003": "EOS trained",
    "D004": "no eval leak",
}


CODES: dict[str, CodeInfo] = {
    c.code: c
    for c in [
        _c("A001", "fail", "S", "adapter-missing", "adapter files missing"),
        _c("A002", "fail", "S", "adapter-empty", "adapter weights empty"),
        _c("A003", "fail", "S", "adapter-untrained", "every lora_B is zero"),
        _c("A004", "fail", "S", "adapter-nonfinite", "NaN/Inf in adapter"),
        _c("A005", "warn", "S", "tiny-delta", "update too small to matter"),
        _c("A006", "fail", "S", "keys-unmatched", "adapter keys do not map onto the base"),
        _c("A007", "fail", "S", "targets-unmatched", "target_modules match nothing"),
        _c("A008", "fail", "S", "base-mismatch", "adapter built for another base"),
        _c("A009", "fail", "S", "vocab-mismatch", "vocabulary size disagrees"),
        _c("A010", "warn", "S", "partially-trained", "some layers untrained"),
        _c("A011", "fail", "S", "config-weights-mismatch", "adapter config disagrees with weights"),
        _c("A012", "warn", "S", "stale-checkpoint", "an earlier checkpoint of the run"),
        _c("A013", "warn", "S", "tied-embedding-update", "update to tied embeddings"),
        _c("A014", "warn", "S", "quantized-training-base", "trained on a quantized base"),
        _c("A015", "fail", "S", "adapter-unchanged", "training left the adapter unchanged"),
        _c("R001", "fail", "R", "adapter-not-injected", "no trained LoRA layers in the model"),
        _c("R002", "fail", "R", "adapter-inactive", "LoRA layers disabled or inactive"),
        _c("R003", "warn", "R", "train-mode", "model in training mode"),
        _c("R004", "fail", "R", "base-arm-contaminated", "'base' object carries LoRA layers"),
        _c("R005", "fail", "R", "no-output-effect", "adapter does not change the logits"),
        _c("R006", "fail", "R", "loaded-differs-from-disk", "loaded LoRA weights differ from file"),
        _c("R007", "warn", "R", "quantized-merge", "merge into a low-precision base"),
        _c("R008", "warn", "R", "sampling-enabled", "generation samples"),
        _c("R009", "warn", "R", "pad-is-eos", "pad token equals eos token"),
        _c("R010", "warn", "R", "template-mismatch", "prompt template differs from training"),
        _c("B001", "fail", "G", "identical-outputs", "base and adapter outputs identical"),
        _c("B002", "fail", "G", "merged-diverges", "merged model disagrees with adapter"),
        _c("B003", "warn", "G", "runaway-generation", "outputs hit max_new_tokens"),
        _c("B004", "warn", "G", "batch-inconsistent", "batched output differs from single"),
        _c("B005", "warn", "G", "no-improvement", "adapter not closer to references than base"),
        _c("E001", "fail", "E", "served-identical", "served adapter equals served base"),
        _c("E002", "fail", "E", "served-is-base", "served adapter reproduces the local base"),
        _c("E003", "fail", "E", "served-model-missing", "served model name missing or failing"),
        _c("E004", "warn", "E", "served-drift", "served adapter drifts from the local adapter"),
        _c("E005", "fail", "E", "served-base-contaminated",
           "served base arm carries the adapter"),
        _c("X001", "fail", "X", "export-equals-base", "export holds the base weights"),
        _c("X002", "fail", "X", "export-delta-wrong", "export delta differs from the adapter"),
        _c("X003", "warn", "X", "export-precision-loss", "saved precision rounds the update away"),
        _c("X004", "fail", "X", "gguf-adapter-mismatch", "LoRA GGUF disagrees with the adapter"),
        _c("X005", "warn", "X", "modelfile-mismatch", "Modelfile serves base or other prompt"),
        _c("X006", "fail", "X", "export-has-adapter-files",
           "merged export still holds adapter files"),
        _c("X007", "fail", "X", "export-config-inconsistent",
           "export config contradicts its weights"),
        _c("X008", "warn", "X", "eos-config-mismatch", "export EOS ids miss the turn's end token"),
        _c("T001", "fail", "T", "runtime-layout-mismatch",
           "runtime builds another model layout"),
        _c("T002", "fail", "T", "runtime-unsupported-modules",
           "runtime drops adapted modules"),
        _c("T003", "fail", "T", "runtime-scaling-unsupported",
           "runtime scales the update unlike PEFT"),
        _c("L001", "fail", "L", "no-loss-log", "no readable loss records"),
        _c("L002", "fail", "L", "loss-not-decreasing", "training loss did not decrease"),
        _c("L003", "warn", "L", "loss-diverging", "loss rises or spikes"),
        _c("L004", "fail", "L", "loss-nonfinite", "NaN/Inf in loss or grad_norm"),
        _c("L005", "warn", "L", "overfitting", "eval loss rises while train falls"),
        _c("L006", "warn", "L", "too-few-steps", "too few optimizer steps"),
        _c("L007", "fail", "L", "zero-loss", "loss exactly zero"),
        _c("L008", "info", "L", "no-eval", "no eval loss logged"),
        _c("L009", "fail", "L", "no-lora-gradient", "no LoRA gradient after step 1"),
        _c("L010", "fail", "L", "zero-grad-norm", "gradient norm exactly zero"),
        _c("D001", "warn", "D", "small-dataset", "few training examples"),
        _c("D002", "fail", "D", "no-trainable-labels", "examples with no trainable labels"),
        _c("D003", "warn", "D", "eos-not-trained", "EOS not among trained labels"),
        _c("D004", "warn", "D", "eval-leak", "eval titles also in train"),
    ]
}

# Codes ftdiag uses before the contract adopts them (next free number in their family).
ADDED_CODES: frozenset[str] = frozenset()

LAYERS = {"S": "static", "R": "runtime", "G": "generation", "L": "logs", "D": "data",
          "E": "endpoint", "X": "export", "T": "target runtime"}
_RANK = {"skip": -1, "pass": 0, "info": 1, "warn": 2, "fail": 3}


@dataclass
class Finding:
    """One check's outcome: a code, a status and its evidence.

    status "pass"/"skip" rows are shown in reports as checks that ran clean or were skipped;
    "info"/"warn"/"fail" rows are findings in the contract's sense.
    """

    code: str
    status: Status
    message: str
    hint: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    check: str = ""  # human name of the check when it differs from the code's title

    @property
    def title(self) -> str:
        info = CODES.get(self.code)
        return info.title if info else self.check

    @property
    def label(self) -> str:
        """The row's name in every renderer: a finding's title, else what the check proves.

        A passing or skipped row never carries its fault's title ("✓ R001 adapter injected").
        """
        info = CODES.get(self.code)
        if self.is_finding or info is None:
            return self.title
        return self.check or info.label(self.status)

    @property
    def evidence_text(self) -> str:
        """The message, a skipped check's always as "skipped: <why>" (one wording everywhere)."""
        if self.status != "skip":
            return self.message
        return SKIPPED + (self.message.removeprefix(SKIPPED).strip() or "not run")

    @property
    def is_finding(self) -> bool:
        return self.status in FINDING_STATUSES

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.status,
            "title": self.title,
            "label": self.label,
            "message": self.message,
            "hint": self.hint,
            "evidence": _jsonable(self.evidence),
        }


def finding(code: str, message: str, *, hint: str = "", status: Status | None = None,
            **evidence: Any) -> Finding:
    """A finding for `code` with the table's default severity unless `status` is given."""
    if code not in CODES:
        raise KeyError(f"unknown finding code {code}")
    return Finding(code, status or CODES[code].severity, message, hint, evidence)  # type: ignore[arg-type]


def passed(code: str, message: str, **evidence: Any) -> Finding:
    """A check for `code` that ran and found nothing wrong."""
    return Finding(code, "pass", message, "", evidence)


def verdict_of(findings: list[Finding]) -> str:
    """fail if any fail finding, else warn if any warn finding, else pass."""
    worst = max((_RANK[f.status] for f in findings), default=0)
    return {3: "fail", 2: "warn"}.get(worst, "pass")


class Details:
    """Base of a command's typed `Report.details` (a dataclass): its `--json` form by field."""

    def to_dict(self) -> dict[str, Any]:
        """Field name -> value (nested values are made JSON-ready by `Report.to_dict`)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


@dataclass
class Report:
    """What every command returns: checks run (with findings among them) and a verdict."""

    command: str
    checks: list[Finding] = field(default_factory=list)
    layers_run: list[str] = field(default_factory=list)
    layers_skipped: dict[str, str] = field(default_factory=dict)
    details: Details | None = None  # the command's own numbers (a Details dataclass)
    timing: Any = None  # where the command's time went (timing.Clock): --json details.timing

    @property
    def findings(self) -> list[Finding]:
        return [c for c in self.checks if c.is_finding]

    @property
    def verdict(self) -> str:
        return verdict_of(self.checks)

    def codes(self) -> set[str]:
        """Codes of warn/fail/info findings (what tests and CI gate on)."""
        return {f.code for f in self.findings}

    def add(self, *items: Finding) -> None:
        self.checks.extend(items)

    def exit_code(self, strict: bool = False) -> int:
        """0 pass (or warn without strict), 1 fail (or warn with strict)."""
        v = self.verdict
        return 1 if v == "fail" or (strict and v == "warn") else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": "ftdiag",
            "version": __version__,
            "command": self.command,
            "verdict": self.verdict,
            "findings": [f.to_dict() for f in self.findings],
            "checks": [{**f.to_dict(), "status": f.status} for f in self.checks],
            "layers": {"run": self.layers_run, "skipped": self.layers_skipped},
            "details": self._details_dict(),
        }

    def _details_dict(self) -> dict[str, Any]:
        details = _jsonable(self.details) if self.details is not None else {}
        if self.timing is not None:  # taken last: the render part ends here
            details["timing"] = _jsonable(self.timing)
        return details


def _jsonable(value: Any) -> Any:
    """Make dataclasses, paths, tuples and numpy/torch scalars JSON-serialisable."""
    import math
    from pathlib import Path

    if callable(getattr(value, "to_dict", None)) and not isinstance(value, type):
        return _jsonable(value.to_dict())  # a result that chooses its own --json form
    if hasattr(value, "__dataclass_fields__"):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if hasattr(value, "item") and callable(value.item):
        try:
            return _jsonable(value.item())
        except (ValueError, RuntimeError):
            return str(value)
    return value
