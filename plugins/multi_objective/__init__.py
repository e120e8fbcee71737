"""Several preference models in one run: ``preference_model=composite`` (weighted, llama2, constrained)."""
