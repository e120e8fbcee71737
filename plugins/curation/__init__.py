"""Instruction data curation: FLAN-style mixtures, Self-Instruct generation, and a quality and
diversity report (``alignkit data inspect``) with curation filters. See docs/data_curation.md."""
