"""Lexical statistics of a text collection: words, lengths, distinct-n.

``words`` and ``distinct_n`` are the evaluation plugin's definitions (plugins/evaluation/
metrics.py), repeated here to keep curation free of evaluation's imports: a data set's distinct-2
and a model's distinct-2 are the same quantity.
"""

from __future__ import annotations

import math
import re
import statistics
from typing import Sequence

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_PLAIN_WORD = re.compile(r"\S+")


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks: the unit of distinct-n."""
    return _WORD.findall(text.lower())


def word_count(text: str) -> int:
    """Whitespace-separated words: the unit of the length statistics and filters."""
    return len(_PLAIN_WORD.findall(text))


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of all ``texts`` (Li et al. 2016); 0.0 when none.

    Pooled over the set, so it falls as a set grows even at constant variety: compare sets
    of similar size (the report says how many texts each figure covers).
    """
    pooled = [g for t in texts for g in ngrams(words(t), n)]
    return len(set(pooled)) / len(pooled) if pooled else 0.0


def length_summary(lengths: Sequence[float]) -> dict[str, float]:
    """Mean, standard deviation, min, quartiles, 90th percentile and max."""
    if not lengths:
        return {}
    ordered = sorted(float(x) for x in lengths)
    q = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 3
    p90 = ordered[min(len(ordered) - 1, int(math.ceil(0.9 * len(ordered))) - 1)]
    return {"mean": sum(ordered) / len(ordered),
            "std": statistics.pstdev(ordered) if len(ordered) > 1 else 0.0,
            "min": ordered[0], "q25": q[0], "median": q[1], "q75": q[2], "p90": p90, "max": ordered[-1]}


def normalise(text: str) -> str:
    """Case- and whitespace-insensitive form: what "exact duplicate" compares."""
    return " ".join(text.lower().split())
