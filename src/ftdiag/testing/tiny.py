"""Tiny random models, a tokenizer and toy adapters built in-process (tests, demos, benchmarks).

Nothing is downloaded: the tokenizer is a byte-level BPE trained on a few sentences, models are
random Llama / GPT-2 configs small enough to train a LoRA adapter on in a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftdiag.prompts.template import DEFAULT_TEMPLATE

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

CORPUS = [
    "Stainless steel water bottle, 750 ml, keeps drinks cold for 24 hours.",
    "Wireless bluetooth headphones with noise cancelling and a 30 hour battery.",
    "Organic cotton t-shirt for men, soft, breathable and machine washable.",
    "USB-C charging cable, braided nylon, 2 metres, fast charging for phones.",
    "Non-stick frying pan, 28 cm, induction compatible, dishwasher safe.",
    "Children's picture book about a curious fox who explores the forest.",
    "Title: Description: This product is durable, practical and easy to use every day.",
    DEFAULT_TEMPLATE.replace("{title}", "Leather wallet with coin pocket"),
]
SPECIAL_TOKENS = ["<pad>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TOY_TEXTS = [
    DEFAULT_TEMPLATE.replace("{title}", t) + d
    for t, d in [
        ("Steel bottle", "A durable steel bottle that keeps drinks cold all day."),
        ("Cotton shirt", "A soft cotton shirt that is breathable and easy to wash."),
        ("USB cable", "A fast braided cable that charges phones quickly."),
        ("Frying pan", "A non-stick pan that heats evenly and cleans easily."),
    ]
]


def build_tokenizer(vocab_size: int = 384) -> PreTrainedTokenizerFast:
    """A small byte-level BPE tokenizer (pad != eos, with a chat template)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        unk_token="<|endoftext|>",
        model_input_names=["input_ids", "attention_mask"],  # no token_type_ids (transformers 4.x)
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(arch: str = "llama", vocab_size: int = 384, seed: int = 0,
                layers: int = 2, hidden: int = 32, init: float = 0.2) -> PreTrainedModel:
    """A tiny random causal LM: 'llama' (q/k/v/o + MLP), 'gpt2' (Conv1D c_attn) or 'qwen2'."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    ids: dict[str, Any] = {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}
    if arch == "llama":
        llama_cfg = LlamaConfig(
            vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2,
            num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=512, tie_word_embeddings=False, initializer_range=init,
            **ids,
        )
        model: PreTrainedModel = LlamaForCausalLM(llama_cfg)
    elif arch == "gpt2":
        gpt2_cfg = GPT2Config(
            vocab_size=vocab_size, n_embd=hidden, n_layer=layers, n_head=4, n_positions=512,
            initializer_range=init,
            **ids,
        )
        model = GPT2LMHeadModel(gpt2_cfg)
    elif arch == "qwen2":  # q/k/v with bias, tied embeddings like Qwen2-0.5B
        from transformers import Qwen2Config, Qwen2ForCausalLM

        qwen_cfg = Qwen2Config(
            vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2,
            num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=512, tie_word_embeddings=True, initializer_range=init,
            **ids,
        )
        model = Qwen2ForCausalLM(qwen_cfg)
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}")
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 3
    return model.eval()


def save_base(out: Path | str, arch: str = "llama", seed: int = 0, **kw: Any) -> Path:
    """Save a tiny random base model and its tokenizer to `out` (a normal HF folder)."""
    out = Path(out)
    tok = build_tokenizer()
    model = build_model(arch, vocab_size=len(tok), seed=seed, **kw)
    model.config.name_or_path = f"tiny-{arch}"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def default_targets(arch: str) -> list[str]:
    return ["c_attn", "c_proj", "c_fc"] if arch == "gpt2" else [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def train_toy_adapter(base_dir: Path | str, out: Path | str, *, steps: int = 30, lr: float = 1e-2,
                      r: int = 4, alpha: int = 8, target_modules: list[str] | None = None,
                      seed: int = 0, save_embedding_layers: bool = False) -> Path:
    """Train a LoRA adapter on TOY_TEXTS for a few steps with a plain loop and save it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir, out = Path(base_dir), Path(out)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    arch = "gpt2" if model.config.model_type == "gpt2" else "llama"  # qwen2 names = llama's
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                     target_modules=target_modules or default_targets(arch),
                     fan_in_fan_out=arch == "gpt2")
    peft_model = get_peft_model(model, cfg)
    batch = tok([t + tok.eos_token for t in TOY_TEXTS], return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=lr)
    peft_model.train()
    for _ in range(steps):
        loss = peft_model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    peft_model.eval()
    peft_model.save_pretrained(str(out), save_embedding_layers=save_embedding_layers)
    tok.save_pretrained(str(out))
    return out


def save_random_adapter(base: str | Path, out: Path | str, *, target_modules: list[str],
                        b_std: float = 0.03, r: int = 8, alpha: int = 16, seed: int = 0,
                        **config: Any) -> Path:
    """A LoRA adapter whose lora_B is small random noise (what a few training steps give).

    config: more LoraConfig fields (use_rslora, alpha_pattern, modules_to_save, ...).
    """
    import torch
    from peft import LoraConfig, get_peft_model

    from ftdiag.model.load import load_base

    loaded = load_base(base)
    torch.manual_seed(seed)
    model = get_peft_model(loaded.model, LoraConfig(
        r=r, lora_alpha=alpha, task_type="CAUSAL_LM", target_modules=target_modules, **config))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, b_std)
    model.save_pretrained(str(out))
    return Path(out)
