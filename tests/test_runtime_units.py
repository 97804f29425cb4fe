"""Layer R's judgments on states written here: PEFT status dicts, disk matches, probe results.

The live-model path (tiny Llama, PEFT) is test_check_runtime.py's; here each R rule gets the
state it reads as a plain dict or small object, so every branch and its words are pinned.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from ftdiag.adapters.details import RuntimeDetails, StatusLine
from ftdiag.adapters.probe import DiskMatch, ProbeResult
from ftdiag.adapters.runtime import (
    _active,
    _base_arm,
    _effect,
    _fast_path,
    _injected,
    _on_disk,
    _pad_is_eos,
    _peft_status,
    _probe_base_arm,
    _probe_effect,
    _sampling,
    _status_lines,
    _train_mode,
)
from ftdiag.findings import Finding
from ftdiag.generation.arms import Arm, FastPath, GenSettings
from ftdiag.model.live import BASE, lora_layers

LAYERS: list[tuple[str, Any]] = [("a", None), ("b", None)]
GOOD = DiskMatch("default", [], [], 0.0, 4)
ACTIVE = {"enabled": True, "active_adapters": ["default"], "merged_adapters": [],
          "available_adapters": ["default"]}
R002_HINT = ("call model.enable_adapter_layers() / model.set_adapter(name); do not leave the "
             "model inside a disable_adapter() block")


# --- R002 ---

def test_r002_passes_on_an_enabled_active_adapter() -> None:
    assert _active(ACTIVE, [GOOD], LAYERS) == Finding(
        "R002", "pass", "enabled, active adapters ['default']")


def test_r002_skips_without_layers() -> None:
    assert _active(ACTIVE, [], []) == Finding("R002", "skip", "skipped: no LoRA layers (R001)")


def test_r002_lists_every_problem() -> None:
    st = {"enabled": False, "active_adapters": "irregular", "merged_adapters": "irregular",
          "available_adapters": ["a", "b"]}
    assert _active(st, [], LAYERS) == Finding(
        "R002", "fail", "adapter layers enabled=False; active adapters=irregular; merged state "
        "irregular", R002_HINT,
        {"enabled": False, "active_adapters": "irregular", "available": ["a", "b"]})


@pytest.mark.parametrize("active", [[], None])
def test_r002_no_active_adapter(active: object) -> None:
    st = {**ACTIVE, "active_adapters": active}
    assert _active(st, [], LAYERS).message == f"active adapters={active}"


def test_r002_the_active_adapter_must_be_the_one_from_disk() -> None:
    st = {**ACTIVE, "active_adapters": ["other"]}
    assert _active(st, [GOOD], LAYERS).message == \
        "active adapter ['other'] is not the one loaded from disk (default)"
    assert _active(st, [DiskMatch("default", ["x"], [], 0.0, 4)], LAYERS).status == "pass"
    both = {**ACTIVE, "active_adapters": ["other", "default"]}
    assert _active(both, [GOOD], LAYERS).status == "pass"


def test_r002_enabled_must_be_true_itself() -> None:
    assert _active({**ACTIVE, "enabled": "irregular"}, [], LAYERS).message == \
        "adapter layers enabled=irregular"


# --- R005 ---

def probe(diff: float) -> ProbeResult:
    return ProbeResult(diff, 0.25, 1, 3, per_prompt=[{"p": 1}])


def test_r005_passes_above_the_tolerance_and_records_the_probe() -> None:
    rt = RuntimeDetails([], 2)
    assert _effect(probe(0.5), rt, 1e-4) == Finding(
        "R005", "pass", "max |Δlogit| 0.5, mean KL 0.25, greedy next token changed on 1/3 probes",
        "", {"max_abs_diff": 0.5, "mean_kl": 0.25})
    assert rt.probe == {"max_abs_diff": 0.5, "mean_kl": 0.25, "greedy_changed": 1, "prompts": 3,
                        "tolerance": 1e-4, "per_prompt": [{"p": 1}]}


@pytest.mark.parametrize("diff", [1e-4, 0.0, float("nan")])
def test_r005_fails_at_or_below_the_tolerance_and_on_nan(diff: float) -> None:
    found = _effect(probe(diff), RuntimeDetails([], 2), 1e-4)
    assert found.status == "fail" and found.message.endswith(" (tolerance 0.0001)")
    assert found.hint == ("the adapter as loaded does nothing observable: see the A/R findings "
                          "above for why")
    assert set(found.evidence) == {"max_abs_diff", "mean_kl", "greedy_changed"}
    assert (found.evidence["mean_kl"], found.evidence["greedy_changed"]) == (0.25, 1)
    assert found.evidence["max_abs_diff"] == diff or diff != diff  # NaN: itself, unequal


def test_r005_fail_evidence_is_the_probe() -> None:
    found = _effect(ProbeResult(5e-5, 0.125, 2, 3), RuntimeDetails([], 2), 1e-4)
    assert found.evidence == {"max_abs_diff": 5e-5, "mean_kl": 0.125, "greedy_changed": 2}


def test_r005_skip_carries_its_reason() -> None:
    rt = RuntimeDetails([], 0)
    assert _effect("skipped: no tokenizer given", rt, 1e-4) == Finding(
        "R005", "skip", "skipped: no tokenizer given")
    assert rt.probe is None


def test_the_probe_is_skipped_for_each_reason_before_running() -> None:
    assert _probe_effect(None, None, [], [], {}) == "skipped: no LoRA layers (R001)"
    assert _probe_effect(None, None, [], LAYERS, {}) == "skipped: no tokenizer given"
    assert _probe_effect(None, object(), [], LAYERS, {"merged_adapters": ["default"]}) == \
        "skipped: adapter merged, no base arm without unmerging"


# --- R006 ---

def test_r006_skips_without_a_folder_or_an_adapter() -> None:
    assert _on_disk([GOOD], None, LAYERS) == Finding(
        "R006", "skip", "skipped: no adapter_dir to compare with")
    assert _on_disk([], "dir", LAYERS) == Finding(
        "R006", "skip", "skipped: no PEFT adapter in the model to compare")
    assert _on_disk([GOOD], "dir", []).status == "skip"


def test_r006_passes_on_the_matching_adapter() -> None:
    bad = DiskMatch("other", ["x"], [], 0.0, 4)
    assert _on_disk([bad, GOOD], "dir", LAYERS) == Finding(
        "R006", "pass", "adapter 'default': 4 tensors equal the file")


def test_r006_reports_the_closest_adapter_with_dropped_and_differing() -> None:
    far = DiskMatch("far", [f"d{i}" for i in range(30)], [], 0.0, 4)
    near = DiskMatch("near", ["k1"], [f"t{i}" for i in range(25)], 0.125, 30)
    assert _on_disk([far, near], "dir", LAYERS) == Finding(
        "R006", "fail", "adapter 'near': 1 file tensors missing from the model (e.g. k1); 25 "
        "tensors differ (max |Δ| 0.125)", "keys dropped on load (prefix mismatch) or a fresh "
        "get_peft_model adapter instead of PeftModel.from_pretrained",
        {"dropped": ["k1"], "differing": [f"t{i}" for i in range(20)], "max_diff": 0.125})
    assert _on_disk([far], "dir", LAYERS).evidence["dropped"] == [f"d{i}" for i in range(20)]


def test_r006_the_closest_adapter_counts_dropped_and_differing_together() -> None:
    dropped = DiskMatch("dropped", ["k1", "k2"], [], 0.0, 4)
    differing = DiskMatch("differing", [], [f"t{i}" for i in range(5)], 0.5, 9)
    assert _on_disk([differing, dropped], "dir", LAYERS).message == \
        "adapter 'dropped': 2 file tensors missing from the model (e.g. k1)"


def test_r006_with_nothing_compared_says_so() -> None:
    empty = DiskMatch("default", [], [], 0.0, 0)
    assert _on_disk([empty], "dir", LAYERS).message == "adapter 'default': nothing compared"


# --- R008 ---

def test_r008_sampling_settings_warn_with_temperature_and_seed() -> None:
    found = _sampling(None, None, GenSettings(do_sample=True, temperature=0.7, seed=3))
    assert found == Finding("R008", "warn", "sampling at temperature 0.7 (seed 3): differences "
                            "may be chance", "drop --sample for a greedy A/B",
                            {"temperature": 0.7, "seed": 3})


def test_r008_greedy_settings_without_a_tokenizer_override_nothing() -> None:
    assert _sampling(None, None, GenSettings()) == Finding(
        "R008", "pass", "greedy decoding, num_beams=1", "", {"overridden": {}})


def test_r008_judges_the_models_generation_config_without_settings() -> None:
    sampling = SimpleNamespace(generation_config=SimpleNamespace(do_sample=True, temperature=0.6,
                                                                 top_p=0.9))
    assert _sampling(sampling, None, None) == Finding(
        "R008", "warn", "generation_config.do_sample=True (temperature=0.6, top_p=0.9)",
        "pass do_sample=False for A/B comparisons", {"temperature": 0.6})
    greedy = SimpleNamespace(generation_config=SimpleNamespace(do_sample=False))
    assert _sampling(greedy, None, None) == Finding("R008", "pass",
                                                    "greedy decoding (do_sample=False)")
    assert _sampling(SimpleNamespace(), None, None).status == "pass"


# --- R009 ---

def tokenizer(pad: int | None, eos: int | None) -> SimpleNamespace:
    return SimpleNamespace(pad_token_id=pad, eos_token_id=eos, pad_token="<p>", eos_token="<e>")


def test_r009_warns_when_pad_is_eos() -> None:
    assert _pad_is_eos(tokenizer(2, 2), None) == Finding(
        "R009", "warn", "base tokenizer: pad_token '<p>' == eos_token (id 2)",
        "a collator that masks pad labels also masks EOS; add a distinct pad token",
        {"pad_token": "<p>", "source": "base tokenizer"})


def test_r009_passes_on_a_distinct_or_missing_pad_and_skips_without_a_tokenizer(
        tmp_path: Path) -> None:
    assert _pad_is_eos(tokenizer(0, 2), None) == Finding(
        "R009", "pass", "base tokenizer: pad '<p>' != eos '<e>'")
    assert _pad_is_eos(tokenizer(None, None), tmp_path).status == "pass"  # no tokenizer file
    assert _pad_is_eos(None, None) == Finding("R009", "skip", "skipped: no tokenizer")


def test_r009_a_broken_adapter_tokenizer_falls_back_to_the_base(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from transformers import AutoTokenizer

    (tmp_path / "tokenizer_config.json").write_text("{broken")
    with pytest.raises(Exception) as broken:  # whatever transformers raises on it
        AutoTokenizer.from_pretrained(str(tmp_path))
    caplog.set_level(logging.DEBUG, logger="ftdiag.adapters.runtime")
    assert _pad_is_eos(tokenizer(2, 2), tmp_path).message.startswith("base tokenizer: ")
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot load adapter tokenizer: {broken.value}"]


# --- R003, R001, status lines ---

class Tiny(nn.Module):
    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        self.drop = nn.Dropout(p)
        self.lin = nn.Linear(2, 2)


def test_r003_names_active_dropout_and_switches_to_eval_when_asked() -> None:
    model = Tiny().train()
    found = _train_mode(model, to_eval=False)
    assert found == Finding("R003", "warn", "model.training=True, 1 dropout modules active "
                            "(e.g. drop)", "call model.eval() before generating",
                            {"training": True, "dropout_modules": ["drop"], "count": 1})
    assert model.training
    switched = _train_mode(model, to_eval=True)
    assert switched.message.endswith("(e.g. drop); switched to eval") and not model.training
    assert switched.evidence["training"] is False


def test_r003_dropout_with_p_zero_does_not_count() -> None:
    model = Tiny(p=0.0).train()
    assert _train_mode(model, False).message == "model.training=True, 0 dropout modules active"
    assert _train_mode(Tiny().eval(), False) == Finding("R003", "pass",
                                                        "eval mode, no active dropout")


class Lora(nn.Module):
    """Named like PEFT's parameters: `x.lora_B.default.weight`, zero or not."""

    def __init__(self, b: float) -> None:
        super().__init__()
        linear = nn.Linear(1, 1, bias=False)
        self.x = nn.ModuleDict({"lora_B": nn.ModuleDict({"default": linear})})
        with torch.no_grad():
            linear.weight.fill_(b)


def test_r001_without_layers_names_the_class() -> None:
    assert _injected(Tiny(), [], []) == Finding(
        "R001", "fail", "Tiny has no LoRA layers",
        "load with PeftModel.from_pretrained(base, adapter_dir)")


def test_r001_zero_lora_b_is_a_fresh_adapter_unless_the_file_is_zero_too() -> None:
    zero = Lora(0.0)
    assert _injected(zero, LAYERS, []) == Finding(
        "R001", "fail", "2 LoRA layers, but every lora_B is zero: a fresh adapter (get_peft_model) "
        "rather than the trained one", "load the trained weights with PeftModel.from_pretrained",
        {"lora_layers": 2})
    assert _injected(zero, LAYERS, [GOOD]) == Finding(
        "R001", "pass", "2 LoRA layers injected; their lora_B are zero exactly as in the file "
        "(see A003)", "", {"lora_layers": 2})
    assert _injected(Lora(1.0), LAYERS, []) == Finding(
        "R001", "pass", "2 LoRA layers injected", "", {"lora_layers": 2})


def test_status_lines_name_the_loaded_adapter_and_the_state() -> None:
    model = SimpleNamespace(peft_config={"default": 1, "b": 2}, training=False)
    lines = _status_lines(model, ACTIVE, [GOOD], "dir")
    assert lines == [
        StatusLine("adapter loaded from path", True, "dir (matches adapter 'default')"),
        StatusLine("PEFT config present", True, "default, b"),
        StatusLine("active adapters", True, "['default']"),
        StatusLine("enabled", True, "True"),
        StatusLine("merged", False, "none", ok=True),
        StatusLine("eval mode", True, "model.training=False")]


def test_status_lines_without_peft_or_a_match() -> None:
    model = SimpleNamespace(training=True)
    lines = _status_lines(model, {"merged_adapters": "irregular"}, [], "dir")
    assert lines[0] == StatusLine("adapter loaded from path", False,
                                  "dir: no adapter in the model matches the file")
    assert lines[1] == StatusLine("PEFT config present", False, "-")
    assert lines[2] == StatusLine("active adapters", False, "-")
    assert lines[3] == StatusLine("enabled", False, "-")
    assert lines[4] == StatusLine("merged", False, "irregular", ok=False)
    assert lines[5] == StatusLine("eval mode", False, "model.training=True")
    assert _status_lines(model, {"merged_adapters": ["a"]}, [], None)[:5:4] == [
        StatusLine("adapter loaded from path", False, "no adapter_dir given"),
        StatusLine("merged", True, "['a']", ok=True)]


def test_r008_a_generation_config_without_the_fields_is_read_with_defaults() -> None:
    bare = SimpleNamespace(generation_config=SimpleNamespace())
    assert _sampling(bare, None, None).status == "pass"  # no do_sample: greedy
    only = SimpleNamespace(generation_config=SimpleNamespace(do_sample=True))
    assert _sampling(only, None, None) == Finding(
        "R008", "warn", "generation_config.do_sample=True (temperature=None, top_p=None)",
        "pass do_sample=False for A/B comparisons", {"temperature": None})


# --- R004, the fast path, peft status: a PEFT model around Tiny (one LoRA layer on `lin`) ---

def peft_tiny(b: float = 0.0, name: str = "default") -> Any:
    """Tiny with a LoRA layer on `lin` (PeftModel), its lora_B filled with b; eval mode."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(Tiny(), LoraConfig(r=1, target_modules=["lin"]), adapter_name=name)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".lora_B." in n:
                p.fill_(b)
    return model.eval()


def logits(base: list[float], adapter: list[float]) -> ProbeResult:
    """R005's reference logits for one prompt: adapters off (base) and on."""
    return ProbeResult(0.0, 0.0, 0, 1, off=[torch.tensor(base)], on=[torch.tensor(adapter)])


CONTAMINATED = ("PEFT injected the adapter in place, so base-vs-adapter would compare the "
                "adapter with itself")
R004_HINT = ("load a second, clean base for comparisons, or use `with model.disable_adapter():` "
             "as the base arm (ftdiag did)")
NOT_USED = ("ftdiag's fast path differed from its reference path (max |Δlogit| 0.5), so this run "
            "used the reference path (each arm alone, disable_adapter() for the base, HF "
            "generate): why")


def test_r004_skips_without_layers_and_the_base_arm_is_the_adapters_off() -> None:
    plain = Tiny()
    assert _base_arm(plain, None, object(), ["p"], [], "s", FastPath()) == (
        Finding("R004", "skip", "skipped: no LoRA layers (R001)"), Arm("base", plain, BASE))


def test_r004_without_a_tokenizer_or_probe_judges_the_base_object_alone() -> None:
    model = peft_tiny(1.0)
    layers = lora_layers(model)
    assert len(layers) == 1
    off = Arm("base", model, BASE)
    skip = Finding("R004", "skip", "skipped: no tokenizer to probe the base arm")
    assert _base_arm(model, None, None, ["p"], layers, "s", FastPath()) == (skip, off)
    assert _base_arm(model, None, object(), [], layers, "s", FastPath()) == (skip, off)
    clean = Tiny()
    assert _base_arm(model, clean, None, [], layers, "s", FastPath()) == (
        Finding("R004", "pass", "the base object carries no LoRA layers"),
        Arm("base", clean, None))


@pytest.mark.parametrize("which", ["inner", "model"])
def test_r004_the_adapter_models_own_base_is_replaced_by_adapters_off(which: str) -> None:
    model = peft_tiny(1.0)
    base = model.get_base_model() if which == "inner" else model
    expected = Finding(
        "R004", "fail", f"the 'base' object is the adapter model's own base module: "
        f"{CONTAMINATED}", R004_HINT,
        {"lora_layers": 1, "same_object": True, "replaced_by": "disable_adapter"})
    layers = lora_layers(model)
    off = Arm("base", model, BASE)
    assert _base_arm(model, base, None, [], layers, "s", FastPath()) == (expected, off)
    # with a tokenizer too: found before any probe runs (the tokenizer is never called)
    assert _base_arm(model, base, object(), ["p"], layers, "s", FastPath()) == (expected, off)


def test_r004_a_second_model_carrying_lora_is_contaminated_too() -> None:
    model, other = peft_tiny(1.0), peft_tiny(1.0)
    found, arm = _base_arm(model, other, object(), ["p"], lora_layers(model), "s", FastPath())
    assert found == Finding(
        "R004", "fail", f"the 'base' object carries 1 LoRA layers: {CONTAMINATED}", R004_HINT,
        {"lora_layers": 1, "same_object": False, "replaced_by": "disable_adapter"})
    assert arm == Arm("base", model, BASE)


def test_r004_probes_the_adapters_off_arm_on_r005s_logits() -> None:
    model = peft_tiny(1.0).train()
    found, arm = _base_arm(model, None, object(), ["p"], lora_layers(model),
                           logits([0.0, 1.0], [0.0, 3.0]), FastPath())
    assert found == Finding(
        "R004", "pass", "base arm is the base model: LoRA off, max |Δlogit| vs adapter 2", "",
        {"path": "disable_adapter()", "max_abs_diff": 2.0, "fast_path": True,
         "fast_path_gap": None})
    assert arm == Arm("base", model, BASE)
    assert model.training  # probed under preserved_state: the mode is given back


def test_r004_fails_when_the_base_arm_returns_the_adapters_logits() -> None:
    same = logits([0.5, 1.0], [0.5, 1.0])
    off = Arm("base", None, BASE)
    assert _probe_base_arm(peft_tiny(1.0), off, None, "p", same, FastPath()) == Finding(
        "R004", "fail", "the base arm returns exactly the adapter's logits although lora_B is "
        "non-zero: it is not the base model", "", {"max_abs_diff": 0.0})
    # lora_B all zero: the adapter is the base model, so equal logits are right
    found = _probe_base_arm(peft_tiny(0.0), off, None, "p", same, FastPath())
    assert found.status == "pass" and found.evidence["max_abs_diff"] == 0.0
    assert found.message == "base arm is the base model: LoRA off, max |Δlogit| vs adapter 0"


def test_r004_says_when_the_fast_path_was_not_used() -> None:
    fast = FastPath(False, 0.5, 1e-3, "why")
    found = _probe_base_arm(peft_tiny(1.0), Arm("base", None, BASE), None, "p",
                            logits([0.0, 0.0], [0.25, 0.0]), fast)
    assert found == Finding(
        "R004", "pass", f"base arm is the base model: LoRA off, max |Δlogit| vs adapter 0.25 "
        f"({NOT_USED})", "", {"path": "disable_adapter()", "max_abs_diff": 0.25,
                              "fast_path": False, "fast_path_gap": 0.5})


def test_the_fast_path_is_not_measured_without_layers_a_tokenizer_or_probes() -> None:
    never = FastPath(reason="not measured: no LoRA layers or no tokenizer")
    assert never.used and never.gap is None  # the defaults: generate on the fast path
    assert _fast_path(None, object(), ["p"], [], "s") == never
    assert _fast_path(None, None, ["p"], LAYERS, "s") == never
    assert _fast_path(None, object(), [], LAYERS, "s") == never
    assert _fast_path(None, object(), None, LAYERS, "s") == never


def test_peft_status_of_a_plain_module_is_empty(caplog: pytest.LogCaptureFixture) -> None:
    from peft.peft_model import get_model_status

    with pytest.raises(ValueError) as no_layers:  # peft: no adapter layers
        get_model_status(Tiny())
    caplog.set_level(logging.DEBUG, logger="ftdiag.adapters.runtime")
    assert _peft_status(Tiny()) == {}
    assert [r.getMessage() for r in caplog.records] == [
        f"get_model_status failed: {no_layers.value}"]
    assert _peft_status(object()) == {}  # no parameters at all (AttributeError)
    st = _peft_status(peft_tiny(1.0, name="tuned"))
    assert (st["enabled"], st["active_adapters"], st["merged_adapters"],
            st["available_adapters"]) == (True, ["tuned"], [], ["tuned"])


def test_r008_greedy_settings_name_what_they_override_from_generation_config() -> None:
    own = SimpleNamespace(do_sample=True, temperature=0.7, top_p=None, eos_token_id=3)
    model = SimpleNamespace(generation_config=own)
    found = _sampling(model, tokenizer(0, 3), GenSettings())
    assert found == Finding(
        "R008", "pass", "greedy decoding, num_beams=1 (overrode {'do_sample': True, "
        "'temperature': 0.7} from generation_config.json)", "",
        {"overridden": {"do_sample": True, "temperature": 0.7}})
    plain = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=3))
    assert _sampling(plain, tokenizer(0, 3), GenSettings()) == Finding(
        "R008", "pass", "greedy decoding, num_beams=1", "", {"overridden": {}})


def test_status_lines_an_irregular_active_set_is_not_active() -> None:
    model = SimpleNamespace(training=False)
    assert _status_lines(model, {"active_adapters": "irregular"}, [], None)[2] == StatusLine(
        "active adapters", False, "irregular")
    assert _status_lines(model, {"active_adapters": []}, [], None)[2] == StatusLine(
        "active adapters", False, "[]")


def test_r003_lists_at_most_ten_dropout_modules_and_counts_all() -> None:
    model = nn.Sequential(*[nn.Dropout(0.1) for _ in range(12)]).train()
    found = _train_mode(model, False)
    assert found.evidence == {"training": True, "dropout_modules": [str(i) for i in range(10)],
                              "count": 12}
    assert found.message == "model.training=True, 12 dropout modules active (e.g. 0)"


class EmbeddingLora(nn.Module):
    """Named like PEFT's LoRA on an embedding: `emb.lora_embedding_B.default`, and no lora_B."""

    def __init__(self, b: float) -> None:
        super().__init__()
        self.emb = nn.Module()
        self.emb.lora_embedding_B = nn.ParameterDict({"default": nn.Parameter(torch.full(
            (1, 2), b))})


def test_r001_an_embedding_lora_b_counts_as_lora_b() -> None:
    assert _injected(EmbeddingLora(0.0), LAYERS, []).status == "fail"
    assert _injected(EmbeddingLora(0.5), LAYERS, []) == Finding(
        "R001", "pass", "2 LoRA layers injected", "", {"lora_layers": 2})


def test_r001_a_tuner_without_lora_b_is_not_judged_on_it() -> None:
    """Layers of another tuner (IA3, LoHa): no lora_B parameter to be zero, so injected."""
    assert _injected(Tiny(), LAYERS, []) == Finding(
        "R001", "pass", "2 LoRA layers injected", "", {"lora_layers": 2})
