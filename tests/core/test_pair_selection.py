"""core/pair_selection.py: DivPO's pools and pairs, pinned to values worked out by hand.

TRL has no DivPO, so there is no reference implementation to call; numpy's quantile (the
definition the pools use) is checked where numpy is installed.
"""

from __future__ import annotations

import pytest

from alignkit.core.errors import ConfigError
from alignkit.core.pair_selection import (
    best_worst_pair,
    check_rho,
    divpo_pair,
    divpo_pools,
    quantile,
    select_group_pairs,
    select_pair,
)

# eight samples of one prompt
SCORES = [0.9, 0.1, 0.8, 0.5, 0.2, 0.9, 0.3, 0.7]
DIVERSITY = [0.2, 0.9, 0.4, 0.1, 0.3, 0.6, 0.0, 0.8]
# sorted scores: 0.1 0.2 0.3 0.5 0.7 0.8 0.9 0.9 (positions 0..7)


def test_quantile_interpolates_between_order_statistics():
    # sorted 1 1 3 4 5: q=0.5 -> h=2 -> 3; q=0.7 -> h=2.8 -> 3 + 0.8 x (4 - 3) = 3.8;
    # q=0.3 -> h=1.2 -> 1 + 0.2 x (3 - 1) = 1.4
    assert quantile([3, 1, 4, 1, 5], 0.5) == 3.0
    assert quantile([3, 1, 4, 1, 5], 0.7) == pytest.approx(3.8, abs=1e-12)
    assert quantile([3, 1, 4, 1, 5], 0.3) == pytest.approx(1.4, abs=1e-12)
    assert quantile([3, 1, 4, 1, 5], 1.0) == 5.0 and quantile([7], 0.25) == 7.0
    # 1 - 0.7 = 0.30000000000000004: (11 - 1) x that is 3.0000000000000004, one ulp past the
    # order statistic 3; rounded, the quantile is exactly 3 and a sample scoring 3 stays in the pool
    assert quantile(range(11), 1 - 0.7) == 3.0


def test_quantile_agrees_with_numpy():
    np = pytest.importorskip("numpy")
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert quantile(SCORES, q) == pytest.approx(float(np.quantile(SCORES, q)), abs=1e-12)


def test_pools_are_the_top_and_bottom_rho_of_the_scores():
    # rho=0.25: (1 - 0.25) quantile: h = 7 x 0.75 = 5.25 -> 0.8 + 0.25 x (0.9 - 0.8) = 0.825 -> chosen {0, 5} (0.9, 0.9)
    #           0.25 quantile: h = 1.75 -> 0.2 + 0.75 x (0.3 - 0.2) = 0.275 -> rejected {1, 4} (0.1, 0.2)
    assert divpo_pools(SCORES, 0.25) == ([0, 5], [1, 4])
    # rho=0.5: both thresholds are the median, h = 3.5 -> 0.5 + 0.5 x (0.7 - 0.5) = 0.6
    assert divpo_pools(SCORES, 0.5) == ([0, 2, 5, 7], [1, 3, 4, 6])
    # rho=0.1: h = 6.3 -> 0.9 -> chosen {0, 5}; h = 0.7 -> 0.1 + 0.7 x 0.1 = 0.17 -> rejected {1}
    assert divpo_pools(SCORES, 0.1) == ([0, 5], [1])


def test_divpo_takes_the_most_diverse_good_and_the_least_diverse_bad():
    # rho=0.25: chosen pool {0: 0.2, 5: 0.6} -> 5; rejected pool {1: 0.9, 4: 0.3} -> 4
    assert divpo_pair(SCORES, DIVERSITY, 0.25) == (5, 4)
    # rho=0.5: chosen pool {0: 0.2, 2: 0.4, 5: 0.6, 7: 0.8} -> 7; rejected {1: 0.9, 3: 0.1, 4: 0.3, 6: 0.0} -> 6
    assert divpo_pair(SCORES, DIVERSITY, 0.5) == (7, 6)
    # the same samples paired by score alone: the first 0.9 against the 0.1
    assert best_worst_pair(SCORES) == (0, 1)


def test_equal_diversity_falls_back_to_the_scores():
    # every sample equally diverse: the best of the chosen pool against the worst of the rejected pool
    assert divpo_pair(SCORES, [1.0] * 8, 0.5) == (0, 1)
    # chosen pool {0, 5} tie in score and diversity: the first index
    assert divpo_pair(SCORES, [0.5] * 8, 0.25) == (0, 1)


def test_ties_at_a_threshold_join_its_pool():
    # sorted 0 1 1 1: the 0.75 quantile is 1 -> chosen {0, 1, 2}; the 0.25 quantile 0.75 -> rejected {3}
    assert divpo_pools([1, 1, 1, 0], 0.25) == ([0, 1, 2], [3])
    # a 0/1 rule with one right answer in eight: the median is 0, the bottom score; the chosen
    # pool takes only what is above the bottom, every wrong answer is in the rejected pool
    assert divpo_pools([0, 0, 1, 0, 0, 0, 0, 0], 0.5) == ([2], [0, 1, 3, 4, 5, 6, 7])
    assert divpo_pair([0, 0, 1, 0, 0, 0, 0, 0], [0.1, 0.3, 0.0, 0.05, 0.2, 0.9, 0.4, 0.6], 0.5) == (2, 3)


def test_no_pair_when_every_score_is_the_same():
    assert divpo_pools([2.0, 2.0, 2.0], 0.5) == ([], [])
    assert divpo_pair([2.0, 2.0, 2.0], [0.1, 0.2, 0.3]) is None
    assert best_worst_pair([2.0, 2.0]) is None
    assert divpo_pair([1.0], [0.5]) is None and best_worst_pair([1.0]) is None


def test_select_pair_is_one_call_per_prompt():
    calls = []

    def measure(texts):
        calls.append(list(texts))
        return DIVERSITY

    responses = [f"r{i}" for i in range(8)]
    assert select_pair(SCORES, responses, measure, rho=0.25) == (5, 4)
    assert calls == [responses]
    assert select_pair(SCORES, responses, measure, selection="best_worst") == (0, 1) and len(calls) == 1
    with pytest.raises(ValueError, match="8 scores but 2 responses"):
        select_pair(SCORES, ["a", "b"], measure)
    with pytest.raises(ConfigError, match="not 'pairs'"):
        select_pair(SCORES, responses, measure, selection="pairs")


def test_rho_must_be_a_share_of_at_most_one_half():
    assert check_rho(0.5) == 0.5
    for bad in (0, 0.0, -0.1, 0.51, 1.0, "0.3"):
        with pytest.raises(ConfigError, match=r"label.divpo_rho must be in \(0, 0.5\]"):
            check_rho(bad, "label.divpo_rho")
    with pytest.raises(ValueError, match="8 scores but 1 diversity values"):
        divpo_pair(SCORES, [0.1])


def test_group_pairs_are_rows_of_the_whole_batch():
    # group 0 = rows 0..7: SCORES / DIVERSITY above -> (5, 4) at rho 0.25; group 1 = rows 8..11:
    # all scores equal -> no pair; group 2 = rows 12..15: scores 3 1 2 0, diversity 0 0 1 1 ->
    # median 1.5: chosen pool {12, 14} -> 14 (diversity 1), rejected pool {13, 15} -> 13 (diversity 0)
    scores = SCORES + [1.0] * 4 + [3.0, 1.0, 2.0, 0.0]
    diversity = DIVERSITY + [0.5] * 4 + [0.0, 0.0, 1.0, 1.0]
    responses = [str(i) for i in range(16)]

    def measure(texts):  # each response text is its row: look its diversity up
        return [diversity[int(t)] for t in texts]

    assert select_group_pairs(scores[:8], responses[:8], 8, measure, rho=0.25) == [(5, 4)]
    assert select_group_pairs(scores[8:], responses[8:], 4, measure, rho=0.5) == [(14 - 8, 13 - 8)]
    both = select_group_pairs(scores[:8] + scores[12:], responses[:8] + responses[12:], 4, measure, rho=0.5)
    # rows 0..3: scores .9 .1 .8 .5, median .65 -> chosen {0, 2}: diversity .2 .4 -> 2; rejected {1, 3}: .9 .1 -> 3
    # rows 4..7: scores .2 .9 .3 .7, median .5 -> chosen {5, 7}: .6 .8 -> 7; rejected {4, 6}: .3 .0 -> 6
    # rows 8..11 are responses 12..15: (14, 13) -> (10, 9)
    assert both == [(2, 3), (7, 6), (10, 9)]
    assert select_group_pairs(scores[8:12], responses[8:12], 4, measure) == []
    with pytest.raises(ValueError, match="do not split into groups of 3"):
        select_group_pairs(scores[:8], responses[:8], 3, measure)
