"""The typed details of a check-adapter report: file stats (S), runtime status (R), folder sections.

Each serialises to the `--json` keys check-adapter always wrote; a part not reached (no base, the
static layer stopped early, no runtime layer) is left out of the JSON, as before.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ftdiag.adapters.stats import LayerStat
from ftdiag.findings import Details, Report
from ftdiag.generation.arms import FastPath


def _present(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


@dataclass
class AdapterConfigInfo:
    """What adapter_config.json and the weights file say (set once both files are present)."""

    weights_file: str
    n_tensors: int
    peft_type: str
    r: int | None
    lora_alpha: float | None
    use_rslora: bool
    use_dora: bool
    target_modules: list[str] | str | None
    base_model_name_or_path: str | None
    dtypes: list[str]


@dataclass
class BaseFit:
    """How the adapter's modules map onto the base (set when a base was given)."""

    base_dir: str
    base_model_type: str | None
    expected_modules: int
    matched_modules: int
    base_vocab_size: int | None
    ratio_skipped: str | None = None  # why ‖ΔW‖/‖W‖ was not computed (no safetensors base)


@dataclass
class LayerTotals:
    """Over all adapted layers; the ‖ΔW‖/‖W‖ range only when the base's norms were read."""

    layers: int
    zero_b: int  # layers whose lora_B is all zero
    delta_norm_sum: float  # Σ‖ΔW‖ over the finite layers
    ranks: list[int]
    scalings: list[float]
    rel_min: float | None = None
    rel_median: float | None = None
    rel_max: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return _present(asdict(self))


@dataclass
class AdapterStats(Details):
    """Layer S's numbers: config, per-layer LoRA stats and totals (`details.static`)."""

    adapter_dir: str
    config: AdapterConfigInfo | None = None
    adapted_modules: int | None = None
    extra_tensors: list[str] | None = None  # tensors that are not lora_A/lora_B
    base: BaseFit | None = None
    layers: list[LayerStat] | None = None
    totals: LayerTotals | None = None

    def to_dict(self) -> dict[str, Any]:
        """The flat `static` object of `--json` (only the parts the static layer reached)."""
        out: dict[str, Any] = {"adapter_dir": self.adapter_dir}
        if self.config is not None:
            out.update(asdict(self.config))
        if self.adapted_modules is not None:
            out.update(adapted_modules=self.adapted_modules, extra_tensors=self.extra_tensors)
        if self.base is not None:
            out.update(_present(asdict(self.base)))
        if self.layers is not None:
            out.update(layers=[asdict(s) for s in self.layers], totals=self.totals)
        return out


@dataclass
class StatusLine:
    """One runtime status line: a true/false value and its evidence (`ok` when value != good)."""

    name: str
    value: bool
    evidence: str
    ok: bool | None = None

    @property
    def good(self) -> bool:
        return self.value if self.ok is None else self.ok

    def to_dict(self) -> dict[str, Any]:
        return _present(asdict(self))


@dataclass
class RuntimeDetails(Details):
    """Layer R's numbers: status lines, LoRA layer count, the logit probe (`details.runtime`)."""

    status: list[StatusLine]
    lora_layers: int
    # max_abs_diff, mean_kl, greedy_changed, prompts, tolerance, per_prompt (when R005 ran)
    probe: dict[str, Any] | None = None
    fast_path: FastPath | None = None  # whether ftdiag's fast path matched its reference path

    def to_dict(self) -> dict[str, Any]:
        return _present(super().to_dict())


@dataclass
class AdapterVerdict:
    """One adapter of a folder with several: its name, path and verdict."""

    name: str
    path: str
    verdict: str


@dataclass
class CheckDetails(Details):
    """check-adapter's details: static and runtime numbers, or (a folder of several adapters)
    each adapter's verdict and its own details."""

    static: AdapterStats | None = None
    base_dir: str | None = None
    runtime: RuntimeDetails | None = None
    adapters: list[AdapterVerdict] | None = None
    sections: dict[str, CheckDetails] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = _present(super().to_dict())
        if not self.sections:
            out.pop("sections")
        return out


def details_of(report: Report) -> CheckDetails:
    """A check-adapter report's details (run_static and audit_runtime always set them)."""
    assert isinstance(report.details, CheckDetails), type(report.details)
    return report.details
