"""Where a model comes from, and facts about a live PEFT model.

load.py: a local folder, a .gguf, the embedded model or a Hub id (hub.py); live.py: LoRA layers.
"""
