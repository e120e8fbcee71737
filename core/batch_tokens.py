"""The kv sampler's default batch budget (``generation.batch_tokens``, core/decoding.py), declared
here, apart from the sampler, so that the generation plugin names it without importing torch
when plugins load (``alignkit --help``, ``alignkit plugins`` and every run's start-up)."""

DEFAULT_BATCH_TOKENS = 16384
"""Rows x (longest prompt + max_new_tokens) of one sampling batch."""
