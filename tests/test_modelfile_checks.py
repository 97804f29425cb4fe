"""X005's parts on Modelfiles written here: parsing, the Go-template subset, each problem's words.

No model is built: the export and adapter are folders this file makes, the expected prompt is
the default template written out by hand, so every expectation is read off the case itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ftdiag.errors import FtdiagError
from ftdiag.export.modelfile import (
    MAX_TEMPLATE,
    Modelfile,
    ModelfileCheck,
    check_modelfile,
    eos_text,
    parse_modelfile,
    render_go,
    resolve_ref,
    same,
    training_prompt,
)
from ftdiag.findings import Finding
from ftdiag.prompts.template import CHAT_TEMPLATE, SYSTEM_PROMPT

EOS = "<|im_end|>"
# the default training prompt for the probe title, written out
PROBE_PROMPT = f"[SYSTEM]\n{SYSTEM_PROMPT}\n[USER]\nTitle: Steel bottle\n[ASSISTANT]\n"
TEMPLATE = '[SYSTEM]\n{{ .System }}\n[USER]\nTitle: {{ .Prompt }}\n[ASSISTANT]\n'
HINT = ("FROM the merged export (or FROM the base with ADAPTER the LoRA GGUF), TEMPLATE "
        "rendering the training prompt, PARAMETER stop with the EOS text")


def parse(tmp_path: Path, text: str) -> Modelfile:
    path = tmp_path / "Modelfile"
    path.write_text(text)
    return parse_modelfile(path)


def good(from_line: str = "FROM ./merged", template: str = TEMPLATE, stop: str = EOS) -> str:
    return (f'{from_line}\nTEMPLATE """{template}"""\nSYSTEM "{SYSTEM_PROMPT}"\n'
            f'PARAMETER stop "{stop}"\n')


@pytest.fixture()
def case(tmp_path: Path) -> Path:
    """tmp_path with merged/ (the export), lora.gguf, adapter/ (EOS <|im_end|>), base/."""
    (tmp_path / "merged").mkdir()
    (tmp_path / "lora.gguf").write_bytes(b"GGUF")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "tokenizer_config.json").write_text(json.dumps({"eos_token": EOS}))
    (tmp_path / "base").mkdir()
    return tmp_path


def x005(case: Path, text: str, kind: str = "merged", export: str = "merged") -> Finding:
    mf = case / "Modelfile"
    mf.write_text(text)
    return check_modelfile(mf, case / export, kind, case / "adapter", case / "base")[1]


# --- parsing ---

def test_instructions_are_case_insensitive_and_values_are_stripped(tmp_path: Path) -> None:
    mf = parse(tmp_path, "  from   ./x.gguf  \nAdapter  ./a.gguf \nsystem be brief\n")
    assert (mf.from_ref, mf.adapter_ref, mf.system) == ("./x.gguf", "./a.gguf", "be brief")
    assert mf.template is None and mf.stops == []


def test_comments_blank_lines_and_unknown_words_are_skipped(tmp_path: Path) -> None:
    mf = parse(tmp_path, "# FROM ./commented\n\n   \nfrobnicate x\nFROM ./real\n#FROM ./c2\n")
    assert mf.from_ref == "./real"


def test_only_parameter_stop_is_read_and_each_stop_is_unquoted(tmp_path: Path) -> None:
    mf = parse(tmp_path, 'FROM x\nPARAMETER temperature 0\nPARAMETER STOP "<a b>"\n'
                         "PARAMETER stop </s>\nPARAMETER   stop   \"\\n\\n\"\n")
    assert mf.stops == ["<a b>", "</s>", "\n\n"]


@pytest.mark.parametrize(("written", "value"), [
    ('"plain"', "plain"),
    ('"tab\\there"', "tab\there"),
    ('"bad \\q escape"', "bad \\q escape"),  # JSON does not know \q: kept as written
    ('"', '"'),
    ('"open', '"open'),
    ("bare words", "bare words"),
])
def test_quoted_values_are_unquoted_once(tmp_path: Path, written: str, value: str) -> None:
    assert parse(tmp_path, f"FROM x\nSYSTEM {written}\n").system == value


def test_a_triple_quoted_block_spans_lines_and_the_rest_of_its_last_line_is_dropped(
        tmp_path: Path) -> None:
    mf = parse(tmp_path, 'FROM x\nTEMPLATE """a\n  b\n""" trailing\nSYSTEM s\n')
    assert (mf.template, mf.system) == ("a\n  b\n", "s")


def test_a_block_closing_at_the_end_of_the_file_is_read(tmp_path: Path) -> None:
    mf = parse(tmp_path, 'FROM x\nSYSTEM """one\ntwo"""')
    assert mf.system == "one\ntwo"


def test_a_file_without_a_final_newline_keeps_its_last_line(tmp_path: Path) -> None:
    assert parse(tmp_path, "SYSTEM s\nFROM ./last").from_ref == "./last"


def test_an_unterminated_block_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(FtdiagError) as err:
        parse(tmp_path, 'FROM x\nTEMPLATE """never closed\n')
    assert str(err.value) == (f"cannot parse Modelfile {tmp_path / 'Modelfile'}: unterminated "
                              '""" block')


def test_a_modelfile_without_from_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FtdiagError) as err:
        parse(tmp_path, "SYSTEM s\n")
    assert str(err.value) == f"Modelfile {tmp_path / 'Modelfile'} has no FROM line"


# --- the Go-template subset ---

@pytest.mark.parametrize(("template", "values", "out"), [
    ("{{ .A }}-{{.B}}", {"A": "a", "B": "b"}, "a-b"),
    ("x{{ .Missing }}y", {}, "xy"),
    ("{{ if .A }}yes{{ else }}no{{ end }}!", {"A": "1"}, "yes!"),
    ("{{ if .A }}yes{{ else }}no{{ end }}!", {"A": ""}, "no!"),
    ("{{ if .A }}{{ if .B }}ab{{ else }}a{{ end }}{{ else }}{{ if .B }}b{{ end }}-{{ end }}",
     {"A": "1", "B": ""}, "a"),
    ("{{ if .A }}{{ if .B }}ab{{ else }}a{{ end }}{{ else }}{{ if .B }}b{{ end }}-{{ end }}",
     {"A": "", "B": "1"}, "b-"),
    ("{{ if .A }}{{ if .B }}ab{{ end }}x{{ end }}y", {"A": "", "B": "1"}, "y"),
    ("{{ if .A }}{{ .A }}{{ end }}{{ .B }}", {"A": "", "B": "b"}, "b"),
    ("a \n\t{{- .B }}", {"B": "b"}, "ab"),
    ("{{ .B -}} \n c", {"B": "b"}, "bc"),
    ("{{ .B -}}\n", {"B": "b"}, "b"),
    ("{{ .B }} \n", {"B": "b"}, "b \n"),
    ("a {{-.B}}", {"B": "b"}, None),  # `-` not followed by a space is no trim marker
    ("{{/* a comment */}}x", {}, "x"),
    ("{{ range .Messages }}{{ end }}", {}, None),
    ("{{ else }}", {}, None),
    ("{{ end }}", {}, None),
    ("open {{ .A", {"A": "a"}, "open {{ .A"),
])
def test_render_go_handles_fields_branches_trims_and_refuses_the_rest(
        template: str, values: dict[str, str], out: str | None) -> None:
    assert render_go(template, values) == out


# --- where EOS, FROM and ADAPTER come from ---

def test_eos_comes_from_the_adapter_before_the_base(tmp_path: Path) -> None:
    for name, eos in (("a", {"content": "</a>"}), ("b", "</b>"), ("empty", ""), ("list", None)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "tokenizer_config.json").write_text(json.dumps({"eos_token": eos}))
    (tmp_path / "none").mkdir()
    assert eos_text(tmp_path / "a", tmp_path / "b") == "</a>"
    assert eos_text(None, tmp_path / "none", tmp_path / "empty", tmp_path / "b") == "</b>"
    assert eos_text(tmp_path / "list", tmp_path / "none") is None
    (tmp_path / "arr").mkdir()
    (tmp_path / "arr" / "tokenizer_config.json").write_text("[1]")
    assert eos_text(tmp_path / "arr") is None


def test_refs_resolve_beside_the_modelfile_home_or_absolute(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mf = tmp_path / "sub" / "Modelfile"
    (tmp_path / "sub" / "w.gguf").parent.mkdir()
    (tmp_path / "sub" / "w.gguf").write_bytes(b"")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_ref("./w.gguf", mf) == tmp_path / "sub" / "w.gguf"
    assert resolve_ref("~/sub/w.gguf", mf) == tmp_path / "sub" / "w.gguf"
    assert resolve_ref(str(tmp_path / "sub" / "w.gguf"), mf) == tmp_path / "sub" / "w.gguf"
    assert resolve_ref("smollm2:135m", mf) is None
    assert resolve_ref("", mf) is None and resolve_ref(None, mf) is None


def test_same_compares_files_not_spellings(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    os.symlink(tmp_path / "f", tmp_path / "link")
    assert same(tmp_path / "link", tmp_path / "f")
    assert not same(None, tmp_path / "f")
    assert not same(tmp_path / "f", tmp_path / "missing")


def test_the_training_prompt_is_the_recorded_template_else_the_default(tmp_path: Path) -> None:
    assert training_prompt(tmp_path, "Steel bottle") == (PROBE_PROMPT, "default")
    (tmp_path / "ftdiag_meta.json").write_text(json.dumps({"template": "T: {title}\n"}))
    assert training_prompt(tmp_path, "Steel bottle") == ("T: Steel bottle\n", "recorded")
    (tmp_path / "ftdiag_meta.json").write_text(json.dumps({"template": CHAT_TEMPLATE}))
    assert training_prompt(tmp_path, "x") == (None, "recorded chat template")


# --- X005 end to end on the folders ---

def test_x005_passes_pinned_on_a_matching_modelfile(case: Path) -> None:
    assert x005(case, good()) == Finding(
        "X005", "pass", f"serves ./merged, TEMPLATE renders the training prompt, stop {EOS!r}",
        check="Modelfile serves the fine-tune")


def test_x005_accepts_the_title_prefix_in_the_prompt_and_the_default_system(case: Path) -> None:
    text = f'FROM ./merged\nTEMPLATE """{TEMPLATE.replace("Title: ", "")}"""\n' \
           f'PARAMETER stop "{EOS}"\n'
    assert x005(case, text).status == "pass"
    no_system = TEMPLATE.replace("{{ .System }}", SYSTEM_PROMPT)
    assert x005(case, good(template=no_system).replace(f'SYSTEM "{SYSTEM_PROMPT}"\n',
                                                       'SYSTEM "other"\n')).status == "pass"


def test_x005_merged_from_a_model_name_serves_no_fine_tune(case: Path) -> None:
    found = x005(case, good("FROM smollm2:135m"))
    assert found == Finding(
        "X005", "warn", f"no ADAPTER and FROM smollm2:135m is not the merged export "
        f"{case / 'merged'}: Ollama serves it without the fine-tune", HINT,
        {"problems": [found.message], "notes": []})


def test_x005_adapter_on_the_merged_export_applies_it_twice(case: Path) -> None:
    found = x005(case, good("FROM ./merged\nADAPTER ./lora.gguf"))
    assert found.evidence["problems"] == ["ADAPTER ./lora.gguf on top of the merged export "
                                          "applies the update twice"]


def test_x005_merged_export_with_an_adapter_on_another_base_is_not_flagged(case: Path) -> None:
    assert x005(case, good("FROM ./base\nADAPTER ./lora.gguf")).status == "pass"


def test_x005_lora_gguf_without_adapter_or_with_another_file(case: Path) -> None:
    alone = x005(case, good("FROM ./base"), "lora-gguf", "lora.gguf")
    assert alone.evidence["problems"] == ["no ADAPTER: Ollama serves FROM ./base alone, not "
                                          "lora.gguf"]
    (case / "other.gguf").write_bytes(b"GGUF")
    other = x005(case, good("FROM ./base\nADAPTER ./other.gguf"), "lora-gguf", "lora.gguf")
    assert other.evidence["problems"] == ["ADAPTER ./other.gguf is not the checked lora.gguf"]
    missing = x005(case, good("FROM ./base\nADAPTER ./gone.gguf"), "lora-gguf", "lora.gguf")
    assert missing.evidence["problems"] == ["ADAPTER ./gone.gguf is not the checked lora.gguf"]
    ok = x005(case, good("FROM ./base\nADAPTER ./lora.gguf"), "lora-gguf", "lora.gguf")
    assert ok.status == "pass" and ok.message.startswith("serves ./lora.gguf,")


def test_x005_without_template_names_the_default_wrapping(case: Path) -> None:
    found = x005(case, f'FROM ./merged\nPARAMETER stop "{EOS}"\n')
    assert found.evidence["problems"] == ["no TEMPLATE: Ollama wraps prompts in the FROM model's "
                                          "default template, not the training prompt"]


def test_x005_quotes_what_the_template_renders_against_the_training_prompt(case: Path) -> None:
    found = x005(case, good(template="Q: {{ .Prompt }}"))
    assert found.evidence["problems"] == [f"TEMPLATE renders 'Q: Steel bottle', the training "
                                          f"prompt (default) is {PROBE_PROMPT!r}"]


def test_x005_shows_200_characters_of_a_long_render(case: Path) -> None:
    exact = "x" * 188 + "{{ .Prompt }}"  # renders 188 + 12 = 200 characters: shown whole
    whole = x005(case, good(template=exact)).evidence["problems"][0]
    assert whole.startswith(f"TEMPLATE renders {'x' * 188 + 'Steel bottle'!r}, the training")
    long = x005(case, good(template="y" * 189 + "{{ .Prompt }}")).evidence["problems"][0]
    assert long.startswith(f"TEMPLATE renders {'y' * 189 + 'Steel bottl'!r}… (201 characters), ")
    big = x005(case, good(template="z" * 1989 + "{{ .Prompt }}")).evidence["problems"][0]
    assert "… (2,001 characters), the training" in big


def test_x005_does_not_render_a_template_over_the_limit(case: Path) -> None:
    over = "a" * (MAX_TEMPLATE + 1)
    found = x005(case, good(template=over))
    assert found.evidence["problems"] == [
        f"TEMPLATE is 1,048,577 characters, more than the 1,048,576 ftdiag renders: not "
        f"compared with the {len(PROBE_PROMPT)}-character training prompt"]
    at_limit = x005(case, good(template="a" * MAX_TEMPLATE)).evidence["problems"][0]
    assert at_limit.startswith("TEMPLATE renders 'aaa")


def test_x005_a_template_beyond_the_subset_is_a_note_not_a_problem(case: Path) -> None:
    found = x005(case, good(template="{{ range .Messages }}{{ .Content }}{{ end }}"))
    note = ("TEMPLATE uses constructs beyond .System/.Prompt/if: compare it with the training "
            "template by hand")
    assert found == Finding("X005", "info", note, "", {"notes": [note]})


def test_x005_with_a_chat_template_in_training_compares_no_template(case: Path) -> None:
    (case / "adapter" / "ftdiag_meta.json").write_text(json.dumps({"template": CHAT_TEMPLATE}))
    found = x005(case, good(template="anything"))
    assert (found.status, found.message) == ("info", "training used a chat template: TEMPLATE "
                                                     "not compared")


def test_x005_wants_the_eos_as_a_stop_and_notes_an_unknown_eos(case: Path) -> None:
    found = x005(case, good(stop="</s>"))
    assert found.evidence["problems"] == [f'no PARAMETER stop "{EOS}" (the EOS the adapter '
                                          "learned to end with): generation runs on"]
    (case / "adapter" / "tokenizer_config.json").unlink()
    unknown = x005(case, good(stop="</s>"))
    assert unknown.evidence == {"notes": ["EOS text unknown (no tokenizer_config.json beside "
                                          "adapter or base)"]}
    (case / "base" / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    assert x005(case, good(stop="</s>")).status == "pass"


def test_x005_joins_several_problems_and_keeps_the_notes(case: Path) -> None:
    (case / "adapter" / "tokenizer_config.json").unlink()
    found = x005(case, "FROM smollm2\n")
    assert found.status == "warn" and found.message.count("; ") == 1
    assert found.message == "; ".join(found.evidence["problems"])
    assert len(found.evidence["notes"]) == 1


# --- corners of the parser and the renderer ---

def test_parse_keeps_the_path_and_reads_an_empty_quoted_value(tmp_path: Path) -> None:
    mf = parse(tmp_path, 'FROM x\nSYSTEM ""\n')
    assert (mf.path, mf.system) == (tmp_path / "Modelfile", "")


def test_a_leading_blank_line_does_not_swallow_the_file(tmp_path: Path) -> None:
    mf = parse(tmp_path, "\nFROM ./x\nSYSTEM s\n")
    assert (mf.from_ref, mf.system) == ("./x", "s")


def test_an_unknown_word_skips_its_line_only(tmp_path: Path) -> None:
    mf = parse(tmp_path, 'frobnicate """\nFROM ./x\n')
    assert mf.from_ref == "./x"


def test_the_value_starts_after_the_first_occurrence_of_the_word(tmp_path: Path) -> None:
    assert parse(tmp_path, "FROM x\nSYSTEM say SYSTEM\n").system == "say SYSTEM"


def test_two_blocks_are_read_apart(tmp_path: Path) -> None:
    mf = parse(tmp_path, 'FROM x\nTEMPLATE """t1"""\nSYSTEM """s1\ns2"""\n')
    assert (mf.template, mf.system) == ("t1", "s1\ns2")


@pytest.mark.parametrize(("template", "values", "out"), [
    ("  {{ .A }}", {"A": "a"}, "  a"),  # nothing trimmed before the first action
    ("{{ .A -}} \n x {{ .B }}", {"A": "a", "B": "b"}, "ax b"),
    ("a\x0c{{- .B }}", {"B": "b"}, "a\x0cb"),  # Go trims space, tab, CR, LF only
    ("{{ .B -}}\x0c c", {"B": "b"}, "b\x0c c"),
    ("{{ .A -}} \x0c{{ .B }}", {"A": "a", "B": "b"}, "a\x0cb"),
    ("{{.A  }} x", {"A": "a"}, "a x"),  # a space before }} is no trim marker
    ("{{/* c */}}x{{ .A }}", {"A": "a"}, "xa"),
    ("{{ if .A }}{{ if .B }}x{{ else }}y{{ end }}z{{ end }}w", {"A": "", "B": ""}, "w"),
])
def test_render_go_corners(template: str, values: dict[str, str], out: str) -> None:
    assert render_go(template, values) == out


def test_check_modelfile_records_what_the_modelfile_says(case: Path) -> None:
    mf = case / "Modelfile"
    mf.write_text(good())
    check, _ = check_modelfile(mf, case / "merged", "merged", case / "adapter", case / "base")
    assert check == ModelfileCheck(str(mf), "./merged", None, True, [EOS], EOS, "default")
    mf.write_text("FROM ./merged\n")
    check, _ = check_modelfile(mf, case / "merged", "merged", case / "adapter", case / "base")
    assert (check.template, check.stops) == (False, [])


def test_x005_tries_an_empty_system_too(case: Path) -> None:
    template = "{{ .System }}" + PROBE_PROMPT.replace("Steel bottle", "{{ .Prompt }}")
    text = good(template=template).replace(f'SYSTEM "{SYSTEM_PROMPT}"', 'SYSTEM "other"')
    assert x005(case, text).status == "pass"


def test_x005_renders_response_as_empty(case: Path) -> None:
    template = TEMPLATE + "{{ .Response }}"
    assert x005(case, good(template=template)).status == "pass"


def test_x005_an_empty_template_renders_nothing(case: Path) -> None:
    found = x005(case, good(template=""))
    assert found.evidence["problems"] == [f"TEMPLATE renders '', the training prompt (default) "
                                          f"is {PROBE_PROMPT!r}"]


def test_x005_joins_its_notes(case: Path) -> None:
    (case / "adapter" / "ftdiag_meta.json").write_text(json.dumps({"template": CHAT_TEMPLATE}))
    (case / "adapter" / "tokenizer_config.json").unlink()
    found = x005(case, good(template="anything"))
    assert (found.status, found.message) == (
        "info", "training used a chat template: TEMPLATE not compared; EOS text unknown (no "
        "tokenizer_config.json beside adapter or base)")
