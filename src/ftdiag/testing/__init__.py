"""Tiny random models, tokenizers and adapters built in-process, for tests, demos and benchmarks."""
