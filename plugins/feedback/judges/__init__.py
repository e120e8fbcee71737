"""Backends of the constitution judge: a local transformers model and an OpenAI-compatible server."""
