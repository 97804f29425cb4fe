"""check-adapter: layered checks on a saved LoRA adapter.

Static files first (static.py, layer S), then the loaded model (runtime.py, layer R);
check.py runs them.
"""
