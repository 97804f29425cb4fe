"""A merged export's own files: adapter files left beside it (X006), a config.json that
contradicts its weights (X007), EOS ids that miss the token that ends a trained turn (X008).

Only headers and the two tensors X007's tie check needs are read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ftdiag.errors import FtdiagError
from ftdiag.export.weights import SafetensorsFolder
from ftdiag.findings import Finding, finding, passed

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
PLAIN_DTYPES = {"F32", "F16", "BF16"}
HEAD, EMBED = "lm_head.weight", "model.embed_tokens.weight"
# transformers 5.25 integrations/peft.py maybe_load_adapters: a local folder holding config.json
# and adapter_config.json loads its own weights, then attaches the adapter it finds there
REATTACH = ("transformers loads this folder's merged weights and then attaches the adapter it "
            "finds beside them (integrations/peft.py maybe_load_adapters): the update is "
            "applied twice")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a user's folder, {} when absent; a broken file is one FtdiagError."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FtdiagError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise FtdiagError(f"{path} is not a JSON object")
    return data


def adapter_files_check(folder: Path) -> Finding:
    """X006: a merged folder that still holds the adapter's files."""
    found = [name for name in ADAPTER_FILES if (folder / name).is_file()]
    if not found:
        return passed("X006", "no adapter_config.json or adapter_model.* beside the weights")
    has_config = (folder / "config.json").is_file()
    what = REATTACH if has_config else ("with no config.json, transformers loads the base named "
                                        "in adapter_config.json plus the adapter: the folder "
                                        "holds only the adapter, not a merged model")
    return finding("X006", f"the merged folder holds {', '.join(found)}: {what}",
                   hint="save the merged model into a folder of its own "
                        "(merge_and_unload().save_pretrained(OUT)), or delete the adapter files",
                   files=found, has_config=has_config)


def config_check(folder: Path, export: SafetensorsFolder, base_dir: Path) -> Finding:
    """X007: config.json against the weights it sits beside, and against the base's config."""
    cfg, base_cfg = read_json(folder / "config.json"), read_json(base_dir / "config.json")
    if not cfg:
        return Finding("X007", "skip", "no config.json in the export")
    fails: list[str] = []
    warns: list[str] = []
    arch, base_arch = cfg.get("architectures"), base_cfg.get("architectures")
    if base_arch and arch != base_arch:
        fails.append(f"architectures {arch} are not the base's {base_arch}: transformers builds "
                     "another model class around these weights")
    keys = set(export.index)
    tied = _tied(cfg)
    if HEAD not in keys and not tied:
        near = sorted(k for k in keys if k.endswith(HEAD))
        fails.append(f"no {HEAD} while tie_word_embeddings is false"
                     + (f" ({near[0]} is misnamed)" if near else "")
                     + ": transformers initialises the head at random")
    elif HEAD in keys and tied and EMBED in keys and not _same(export, HEAD, EMBED):
        fails.append(f"tie_word_embeddings is true while {HEAD} differs from {EMBED}: on load "
                     "the trained head is replaced by the embeddings")
    quant = cfg.get("quantization_config")
    dtypes = _dtypes(export)
    if isinstance(quant, dict) and dtypes and dtypes <= PLAIN_DTYPES:
        warns.append(f"quantization_config ({quant.get('quant_method', '?')}) over plain "
                     f"{'/'.join(sorted(dtypes))} tensors: loaders quantize again or refuse")
    evidence: dict[str, Any] = {"architectures": arch, "base_architectures": base_arch,
                "tie_word_embeddings": tied, "dtypes": sorted(dtypes)}
    hint = ("save the merged model with save_pretrained from the merged object, so config.json "
            "describes its weights")
    if fails:
        return finding("X007", "; ".join(fails + warns), hint=hint, **evidence)
    if warns:
        return finding("X007", "; ".join(warns), status="warn",
                       hint="drop quantization_config from config.json", **evidence)
    return passed("X007", f"config.json matches the weights ({', '.join(arch or ['?'])})",
                  **evidence)


def _tied(cfg: dict[str, Any]) -> bool:
    value = cfg.get("tie_word_embeddings")
    if value is None:
        value = (cfg.get("text_config") or {}).get("tie_word_embeddings", True)
    return bool(value)


def _same(export: SafetensorsFolder, a: str, b: str) -> bool:
    wa, wb = export.read(a.removesuffix(".weight")), export.read(b.removesuffix(".weight"))
    if wa is None or wb is None:
        return False
    return wa.values.shape == wb.values.shape and bool(np.array_equal(wa.values, wb.values))


def _dtypes(export: SafetensorsFolder) -> set[str]:
    from ftdiag.adapters.tensorfile import open_safetensors

    return {info.dtype for f in sorted(set(export.index.values()))
            for info in open_safetensors(f).tensors.values()}


def eos_check(export_eos: set[int] | None, turn_end: tuple[int, str, str] | None,
              where: str) -> Finding:
    """X008: the token that ends a trained turn is among the export's EOS ids."""
    if turn_end is None:
        return Finding("X008", "skip", "the token that ends a trained turn is not known "
                       "(no recorded template and no tokenizer)")
    if export_eos is None:
        return Finding("X008", "skip", f"no EOS ids in the {where}")
    tid, text, source = turn_end
    evidence: dict[str, Any] = {"turn_end_id": tid, "turn_end": text, "source": source,
                "export_eos_ids": sorted(export_eos)}
    if tid in export_eos:
        return passed("X008", f"the {where} stops at {text!r} (id {tid}), where training "
                      f"ended each turn ({source})", **evidence)
    return finding("X008", f"training ended each turn with {text!r} (id {tid}, {source}); the "
                   f"{where} stops at ids {sorted(export_eos)} only: generation runs past the "
                   "turn", hint=f"add {tid} to eos_token_id in generation_config.json (or the "
                   "GGUF's eos/eot ids)", **evidence)


def folder_eos(folder: Path) -> set[int] | None:
    """EOS ids a merged folder gives generation: generation_config.json, else config.json."""
    for name in ("generation_config.json", "config.json"):
        value = read_json(folder / name).get("eos_token_id")
        if value is not None:
            ids = value if isinstance(value, list) else [value]
            return {int(i) for i in ids if isinstance(i, int)}
    return None


def gguf_eos(fields: dict[str, Any]) -> set[int] | None:
    """EOS ids a merged GGUF stops at (tokenizer.ggml.eos_token_id and eot_token_id)."""
    ids = {int(fields[k]) for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id")
           if isinstance(fields.get(k), (int, np.integer))}
    return ids or None


def turn_end_token(adapter_dir: Path, base_dir: Path | None) -> tuple[int, str, str] | None:
    """(id, text, where it came from) of the token that closed each assistant turn in training.

    A `{title}` template (ftdiag train) appends the tokenizer's EOS; a chat template closes the
    turn with the first special token after the assistant's content.
    """
    from ftdiag.adapters.preflight import tokenizer_source
    from ftdiag.prompts.template import recorded_template

    tpl = recorded_template(adapter_dir)
    source_dir = tokenizer_source(adapter_dir, base_dir) or adapter_dir
    tok_cfg = read_json(Path(source_dir) / "tokenizer_config.json")
    if tpl is None and not tok_cfg:
        return None
    from ftdiag.model.load import load_tokenizer

    try:
        tok = load_tokenizer(source_dir)
    except FtdiagError:
        return None
    if tpl is not None and tpl.is_chat and getattr(tok, "chat_template", None):
        marker = "ftdiag-turn-content"
        text = str(tok.apply_chat_template(
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": marker}],
            tokenize=False))
        ids = tok(text[text.index(marker) + len(marker):], add_special_tokens=False)["input_ids"]
        special = set(tok.all_special_ids) | {i for i, t in tok.added_tokens_decoder.items()
                                              if t.special}
        for i in ids:
            if i in special:
                return int(i), str(tok.convert_ids_to_tokens(i)), "the chat template"
    if tok.eos_token_id is None:
        return None
    where = "the recorded training template + EOS" if tpl else "the tokenizer's EOS"
    return int(tok.eos_token_id), str(tok.eos_token), where
