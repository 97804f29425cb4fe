"""Your own TRL script with ftdiag's checks in it: `SFTTrainer(..., callbacks=[FtdiagCallback()])`.

    python examples/callback_sft.py --out runs/cb                  # tiny random Llama, seconds
    python examples/callback_sft.py --out runs/cb --base DIR       # any local HF model folder
    python examples/callback_sft.py --out runs/cb2 --freeze-lora-b # a broken run: stops at step 1
    ftdiag doctor runs/cb
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from ftdiag import FtdiagCallback, tiny

DATA = Path(__file__).parents[1] / "src" / "ftdiag" / "samples" / "amazon_titles_sample.json"
TEMPLATE = "Title: {title}\nDescription: "


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--base", help="local model folder (default: a tiny random Llama)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--freeze-lora-b", action="store_true", help="break the run on purpose")
    opts = ap.parse_args()
    base = opts.base or str(tiny.save_base(Path(tempfile.mkdtemp()) / "tiny-llama"))

    rows = [json.loads(line) for line in DATA.read_text().splitlines()[:200]]
    data = Dataset.from_list([{"prompt": TEMPLATE.format(title=r["title"]),
                               "completion": r["content"]} for r in rows
                              if r["title"] and r["content"]])
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                      task_type="CAUSAL_LM"))
    if opts.freeze_lora_b:  # lora_B stays zero, so no gradient reaches lora_A either
        for name, p in model.named_parameters():
            p.requires_grad_(p.requires_grad and "lora_B" not in name)

    args = SFTConfig(output_dir=opts.out, max_steps=opts.steps, per_device_train_batch_size=4,
                     learning_rate=2e-3, save_steps=3, logging_steps=3,
                     max_length=opts.max_length,
                     report_to="none", disable_tqdm=True,
                     use_cpu=not torch.cuda.is_available(), bf16=torch.cuda.is_available())
    trainer = SFTTrainer(model=model, args=args, train_dataset=data,
                         processing_class=AutoTokenizer.from_pretrained(base),
                         callbacks=[FtdiagCallback(template=TEMPLATE)])
    trainer.train()
    trainer.save_model(opts.out)


if __name__ == "__main__":
    main()
