"""Prompt templates shared by train and ab-test, and the template recorded at training time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ftdiag.errors import FtdiagError
from ftdiag.runmeta import read_meta

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DEFAULT_TEMPLATE = (
    "[SYSTEM]\nYou are an assistant that writes detailed product descriptions from a given title.\n"
    "[USER]\nTitle: {title}\n[ASSISTANT]\n"
)
SYSTEM_PROMPT = "You are an assistant that writes detailed product descriptions from a given title."
CHAT_TEMPLATE = "<chat-template>"  # marker: use the tokenizer's chat template


@dataclass(frozen=True)
class PromptTemplate:
    """A `{title}` format string, or the tokenizer's chat template when `text` is CHAT_TEMPLATE."""

    text: str = DEFAULT_TEMPLATE
    source: str = "default"  # default | file:PATH | chat-template | recorded

    @property
    def is_chat(self) -> bool:
        return self.text == CHAT_TEMPLATE

    def render(self, title: str, tokenizer: PreTrainedTokenizerBase | None = None) -> str:
        """The prompt for one title (the completion follows it directly)."""
        if self.is_chat:
            if tokenizer is None or not getattr(tokenizer, "chat_template", None):
                raise FtdiagError("--chat-template given but the tokenizer has no chat template")
            messages = [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": f"Title: {title}"},
            ]
            return str(
                tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            )
        return self.text.replace("{title}", title)


def load_template(path: Path | str | None = None, chat: bool = False) -> PromptTemplate:
    """The template the user asked for: a file with `{title}`, the chat template, or the default."""
    if chat:
        return PromptTemplate(CHAT_TEMPLATE, "chat-template")
    if path is None:
        return PromptTemplate()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FtdiagError(f"cannot read template {p}: {exc}") from exc
    if "{title}" not in text:
        raise FtdiagError(f"template {p} has no {{title}} placeholder")
    return PromptTemplate(text, f"file:{p}")


def recorded_template(adapter_dir: Path | str) -> PromptTemplate | None:
    """The template recorded at training time in the adapter dir, if any."""
    text = read_meta(adapter_dir).get("template")
    return PromptTemplate(text, "recorded") if isinstance(text, str) and text else None
