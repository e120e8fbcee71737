"""RougeIndex's pruning bound at its edge: pairs whose exact F equals the threshold.

The Self-Instruct rule rejects a new instruction when rouge-score's ROUGE-L F-measure against a
pool member is > 0.7. rouge-score computes F = 2PR / (P + R) in floats, and for some token counts
that lands just above the exact value, so the pair is a duplicate by the rule although the exact
bound 2·LCS / (|a| + |b|) equals the threshold. The index must then score the pair, not skip it.
"""

from __future__ import annotations

import pytest

from alignkit.plugins.curation.rouge import RougeIndex, near_duplicates

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")


def pair(n_a: int, n_b: int, lcs: int) -> tuple[str, str]:
    """Two texts of n_a and n_b tokens whose LCS (and multiset overlap) is ``lcs`` tokens."""
    shared = [f"w{i}" for i in range(lcs)]
    a = shared + [f"a{i}" for i in range(n_a - lcs)]
    b = shared + [f"b{i}" for i in range(n_b - lcs)]
    return " ".join(a), " ".join(b)


def self_instruct_rejects(a: str, b: str, threshold: float) -> bool:
    """The Self-Instruct rule, by rouge-score itself: F-measure > threshold."""
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False).score(b, a)["rougeL"].fmeasure > threshold


# (|a|, |b|, LCS, threshold): exact F = 2·LCS / (|a| + |b|) equals the threshold in each case:
#   2·7 / (8 + 12) = 14/20 = 0.7    rouge-score: P = 7/12, R = 7/8 -> 0.7000000000000001
#   2·7 / (9 + 11) = 14/20 = 0.7    rouge-score: 0.7000000000000001
#   2·7 / (7 + 13) = 14/20 = 0.7    rouge-score: P = 7/13, R = 1   -> 0.7000000000000001
#   2·4 / (5 + 5)  = 8/10  = 0.8    rouge-score: P = R = 4/5       -> 0.8000000000000002
EDGES = [(8, 12, 7, 0.7), (9, 11, 7, 0.7), (7, 13, 7, 0.7), (5, 5, 4, 0.8)]
# and clearly below: 2·7 / (8 + 13) = 14/21 = 0.667 < 0.7; 2·3 / (4 + 4) = 0.75 < 0.8
BELOW = [(8, 13, 7, 0.7), (4, 4, 3, 0.8)]


@pytest.mark.parametrize("n_a, n_b, lcs, threshold", EDGES + BELOW)
def test_index_decides_each_edge_as_rouge_score_does(n_a, n_b, lcs, threshold):
    a, b = pair(n_a, n_b, lcs)
    expected = self_instruct_rejects(a, b, threshold)
    assert expected == ((n_a, n_b, lcs, threshold) in EDGES), "the edge cases are duplicates by the rule"
    for query, member in ((a, b), (b, a)):
        index = RougeIndex(threshold, [member])
        assert (index.match(query) is not None) == expected
        assert (index.best(query) is not None) == expected
    assert [i is not None for i in near_duplicates([a, b], threshold)] == [expected, expected]


def test_best_still_returns_the_highest_score_next_to_an_edge_pair():
    # member 0 is at the 0.7 edge (8 vs 12 tokens); member 1 shares 8 of its 9 tokens with the
    # query: exact F = 2·8 / (8 + 9) = 16/17 = 0.941, which best() must prefer
    query, edge = pair(8, 12, 7)
    closer = " ".join(query.split() + ["extra"])
    found = RougeIndex(0.7, [edge, closer]).best(query)
    assert found is not None and found[1] == 1 and found[0] == pytest.approx(16 / 17)
