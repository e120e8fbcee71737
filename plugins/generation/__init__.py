"""Generation backends: transformers ``generate`` (built in) and vLLM (the ``vllm`` extra)."""
