"""ROUGE-L between instructions, as the Self-Instruct paper filters near-duplicates.

Scores come from Google's ``rouge-score`` package (``RougeScorer(["rougeL"])``, no
stemming: the scorer the Self-Instruct code uses), so "ROUGE-L > 0.7" means what it means
in the paper. Comparing one instruction with a whole pool is quadratic work in pure Python;
``RougeIndex`` skips every pair that cannot pass: the LCS of two token lists is at most
their multiset overlap M, so F = 2·LCS / (|a| + |b|) <= 2·M / (|a| + |b|), and M for all
pool members comes from an inverted index of (token, occurrence) features at once.

The bound is exact arithmetic but rouge-score's F is not: it computes 2·P·R / (P + R) in floats,
which can land a hair above the exact value (8 and 12 tokens sharing a 7-token LCS score
0.7000000000000001, not 0.7). So a pair is skipped only when its bound is below the threshold
by more than ``_SLACK``; pairs at the bound are scored by rouge-score, whose number decides.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

_tokenizer = None
_scorer = None
_SLACK = 1e-9  # far above float rounding of F (~1e-16), far below any real gap between two F values


def _tools():
    global _tokenizer, _scorer
    if _scorer is None:
        from rouge_score import rouge_scorer, tokenizers

        _tokenizer = tokenizers.DefaultTokenizer(use_stemmer=False)
        _scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False, tokenizer=_tokenizer)
    return _tokenizer, _scorer


def tokens(text: str) -> list[str]:
    """rouge-score's tokens: lower-cased runs of [a-z0-9] (other characters split words)."""
    return _tools()[0].tokenize(text)


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F-measure of two texts (symmetric), by rouge-score."""
    return float(_tools()[1].score(a, b)["rougeL"].fmeasure)


def _features(toks: Sequence[str]) -> list[tuple[str, int]]:
    seen: dict[str, int] = {}
    out = []
    for tok in toks:
        k = seen.get(tok, 0)
        seen[tok] = k + 1
        out.append((tok, k))
    return out


class RougeIndex:
    """A growing pool of texts that answers "which member is within ROUGE-L > threshold?"."""

    def __init__(self, threshold: float = 0.7, texts: Sequence[str] = ()) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"ROUGE-L threshold must be in [0, 1], not {threshold}")
        self.threshold = float(threshold)
        self.texts: list[str] = []
        self._lengths: list[int] = []
        self._postings: dict[tuple[str, int], list[int]] = {}
        self._length_array: np.ndarray | None = None  # self._lengths as an array, rebuilt after adds
        self.exact_scored = 0  # pairs scored by rouge-score (the rest were ruled out by the bound)
        for text in texts:
            self.add(text)

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, text: str) -> int:
        """Add ``text`` to the pool; returns its index."""
        index = len(self.texts)
        toks = tokens(text)
        self.texts.append(text)
        self._lengths.append(len(toks))
        self._length_array = None
        for feature in _features(toks):
            self._postings.setdefault(feature, []).append(index)
        return index

    def _candidates(self, text: str, exclude: int | None) -> list[tuple[float, int]]:
        toks = tokens(text)
        n = len(self.texts)
        if not toks or n == 0:
            return []
        overlap = np.zeros(n, dtype=np.int32)
        for feature in _features(toks):
            members = self._postings.get(feature)
            if members:
                overlap[members] += 1
        if self._length_array is None:
            self._length_array = np.asarray(self._lengths, dtype=np.float64)
        bound = 2.0 * overlap / (len(toks) + self._length_array)
        if exclude is not None and 0 <= exclude < n:
            bound[exclude] = -1.0
        hits = np.nonzero(bound > self.threshold - _SLACK)[0]  # rouge-score may round F up past the threshold
        return sorted(((float(bound[i]), int(i)) for i in hits), reverse=True)

    def match(self, text: str, exclude: int | None = None) -> tuple[float, int] | None:
        """The first pool member found with ROUGE-L(text, member) > threshold, as (score,
        index), trying the most overlapping members first; None when there is none."""
        for _, i in self._candidates(text, exclude):
            self.exact_scored += 1
            score = rouge_l(text, self.texts[i])
            if score > self.threshold:
                return score, i
        return None

    def best(self, text: str, exclude: int | None = None) -> tuple[float, int] | None:
        """The most similar member among those that may exceed the threshold, as (score,
        index); None when none does."""
        found: tuple[float, int] | None = None
        for bound, i in self._candidates(text, exclude):
            if found is not None and bound < found[0] - _SLACK:  # cannot beat found, even rounded up
                break
            self.exact_scored += 1
            score = rouge_l(text, self.texts[i])
            if score > self.threshold and (found is None or score > found[0]):
                found = (score, i)
        return found


def near_duplicates(texts: Sequence[str], threshold: float = 0.7) -> list[int | None]:
    """For each text, the index of another text with ROUGE-L > threshold (None if none)."""
    index = RougeIndex(threshold, texts)
    out: list[int | None] = []
    for i, text in enumerate(texts):
        hit = index.match(text, exclude=i)
        out.append(None if hit is None else hit[1])
    return out
