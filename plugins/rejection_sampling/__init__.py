"""Rejection sampling (best-of-n) fine-tuning data: the ``best_of_n`` stage."""
