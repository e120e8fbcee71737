"""The composite's combiners, pinned to values worked out by hand (TRL has none of them)."""

from __future__ import annotations

import pytest
import torch

from alignkit.plugins.multi_objective import combiners as C


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


def test_batch_normaliser_standardises_with_the_population_std():
    # [1, 2, 3]: mean 2, var (1 + 0 + 1) / 3 = 2/3, std 0.816497 -> [-1.224745, 0, 1.224745]
    assert C.Normaliser("batch")(t(1, 2, 3)).tolist() == pytest.approx([-1.224745, 0.0, 1.224745], abs=1e-5)
    # a constant batch has no spread: centred only, not divided by ~0
    assert C.Normaliser("batch")(t(2, 2)).tolist() == [0.0, 0.0]
    assert C.Normaliser("none")(t(5, -1)).tolist() == [5.0, -1.0]


def test_running_normaliser_uses_every_score_seen_so_far():
    norm = C.Normaliser("running")
    # first batch: the same as the batch statistics
    assert norm(t(1, 2, 3)).tolist() == pytest.approx([-1.224745, 0.0, 1.224745], abs=1e-5)
    # then [5]: over [1, 2, 3, 5] the mean is 11/4 = 2.75, var (3.0625 + 0.5625 + 0.0625 + 5.0625) / 4 = 2.1875,
    # std 1.479020 -> (5 - 2.75) / 1.479020 = 1.521278 (a lone score is not standardised to 0)
    assert norm(t(5)).tolist() == pytest.approx([1.521278], abs=1e-5)
    assert (norm.mean, norm.count) == (pytest.approx(2.75), 4)
    with pytest.raises(ValueError, match="running, batch, none"):
        C.Normaliser("whatever")


def test_weighted_sums_the_standardised_members():
    a = C.Normaliser("batch")(t(1, 2, 3))  # [-1.224745, 0, 1.224745]
    # [0, 0, 4]: mean 4/3, var (16/9 + 16/9 + 64/9) / 3 = 32/9, std 1.885618 -> [-0.707107, -0.707107, 1.414214]
    b = C.Normaliser("batch")(t(0, 0, 4))
    assert b.tolist() == pytest.approx([-0.707107, -0.707107, 1.414214], abs=1e-5)
    # 1 * a + 0.5 * b = [-1.224745 - 0.353553, 0 - 0.353553, 1.224745 + 0.707107]
    assert C.weighted({"a": a, "b": b}, {"a": 1.0, "b": 0.5}).tolist() == pytest.approx(
        [-1.578298, -0.353553, 1.931852], abs=1e-5)
    # a member without a weight counts 1.0: a + b
    assert C.weighted({"a": a, "b": b}, {}).tolist() == pytest.approx([-1.931852, -0.707107, 2.638959], abs=1e-5)


def test_logit_inverts_the_sigmoid_and_stays_finite_at_0_and_1():
    # log(0.5 / 0.5) = 0; log(0.8 / 0.2) = log 4 = 1.386294; 0 and 1 clamp to 1e-6: log(1e-6 / (1 - 1e-6)) = -13.815510
    assert C.logit(t(0.5, 0.8, 0.0, 1.0)).tolist() == pytest.approx([0.0, 1.386294, -13.815510, 13.815510], abs=1e-4)


def test_llama2_uses_the_safety_score_when_flagged_or_below_the_threshold():
    helpful, safe = t(2.0, 1.0, 0.5, 4.0), t(3.0, -2.0, 0.0, -1.7)
    flagged = torch.tensor([False, False, True, False])
    # sigmoid(3) = 0.9526 >= 0.15 -> R_h = 2; sigmoid(-2) = 0.1192 < 0.15 -> R_s = -2; flagged -> R_s = 0;
    # sigmoid(-1.7) = 0.1545 >= 0.15 (the threshold's logit is log(0.15 / 0.85) = -1.7346) -> R_h = 4.
    # LOGIT(sigmoid(x)) = x: the logits come back as they are
    chosen, used = C.llama2_select(helpful, safe, flagged, threshold=0.15, scale="logit")
    assert chosen.tolist() == pytest.approx([2.0, -2.0, 0.0, 4.0])
    assert used.tolist() == [False, True, True, False]
    # WHITEN over the batch [2, -2, 0, 4]: mean 1, var (1 + 9 + 1 + 9) / 4 = 5, std 2.236068
    # -> [0.447214, -1.341641, -0.447214, 1.341641]
    assert C.Normaliser("batch")(chosen).tolist() == pytest.approx([0.447214, -1.341641, -0.447214, 1.341641],
                                                                   abs=1e-5)


def test_llama2_on_probabilities_takes_the_logit():
    # R_s = 0.5 >= 0.15 -> R_h = 0.9 -> log(0.9 / 0.1) = log 9 = 2.197225;
    # R_s = 0.1 < 0.15 -> R_s = 0.1 -> log(0.1 / 0.9) = -2.197225
    chosen, used = C.llama2_select(t(0.9, 0.6), t(0.5, 0.1), torch.tensor([False, False]), 0.15, "probability")
    assert chosen.tolist() == pytest.approx([2.197225, -2.197225], abs=1e-5)
    assert used.tolist() == [False, True]
    with pytest.raises(ValueError, match="logit, probability"):
        C.llama2_select(t(0.9), t(0.5), torch.tensor([False]), 0.15, "percent")


def test_constrained_is_safe_rlhfs_normalised_lagrangian():
    reward, cost = t(1.0, 0.0), t(0.5, 2.0)
    # lambda = 1: ((1 - 0.5) / 2, (0 - 2) / 2) = (0.25, -1.0)
    assert C.constrained(reward, cost, 1.0).tolist() == pytest.approx([0.25, -1.0])
    # lambda = 0: the reward alone
    assert C.constrained(reward, cost, 0.0).tolist() == pytest.approx([1.0, 0.0])
    # lambda = 3: ((1 - 1.5) / 4, (0 - 6) / 4) = (-0.125, -1.5)
    assert C.constrained(reward, cost, 3.0).tolist() == pytest.approx([-0.125, -1.5])
    with pytest.raises(ValueError, match=">= 0"):
        C.constrained(reward, cost, -0.1)


def test_the_multiplier_rises_over_budget_and_falls_to_zero_under_it():
    # 1.0 + 0.1 * (1.25 - 0.5) = 1.075
    assert C.update_multiplier(1.0, mean_cost=1.25, budget=0.5, lr=0.1) == pytest.approx(1.075)
    # 0.05 + 0.2 * (0.0 - 0.5) = -0.05 -> projected to 0
    assert C.update_multiplier(0.05, mean_cost=0.0, budget=0.5, lr=0.2) == 0.0
    # exactly at the budget: unchanged
    assert C.update_multiplier(0.7, mean_cost=0.5, budget=0.5, lr=0.2) == pytest.approx(0.7)
