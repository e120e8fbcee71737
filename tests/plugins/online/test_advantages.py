"""RLOO's and GRPO's pure functions against hand-computed values (plugins/rl: advantages.py, policy_losses.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from alignkit.core.rl import PolicyLossInputs, aggregate
from alignkit.plugins.rl import advantages as A
from alignkit.plugins.rl import policy_losses as K
from alignkit.plugins.rl.policy_losses import ppo_clip


def policy_gradient_loss(logprobs, old, advantages, mask, cliprange=0.2, ref_logprobs=None, kl_coef=0.0,
                         kl_estimator="k3", aggregation="token"):
    """RLOO's and GRPO's loss as the RL loop computes it: ``ppo_clip`` with one advantage per
    response on each of its tokens, aggregated per token or per sequence."""
    options = {"cliprange": cliprange, "kl_in_loss": True, "kl_coef": kl_coef, "kl_estimator": kl_estimator}
    out = ppo_clip(PolicyLossInputs(logprobs, old, advantages.unsqueeze(1) * mask, mask, ref_logprobs, options))
    mode = {"token": "token_mean", "sequence": "sequence_mean"}[aggregation]
    numerator, denominator = aggregate(out.per_token, mask, mode, mask.shape[1])
    return numerator / denominator, SimpleNamespace(**out.metrics)


def test_rloo_advantages_are_leave_one_out():
    scores = torch.tensor([1.0, 0.0, 0.0, 0.0, 3.0, 1.0, 2.0, 2.0])
    # prompt 1: the first sample's baseline is (0+0+0)/3, the others' (1+0+0)/3
    # prompt 2: 3 - (1+2+2)/3, 1 - (3+2+2)/3, 2 - (3+1+2)/3, 2 - (3+1+2)/3
    expected = [1.0, -1 / 3, -1 / 3, -1 / 3, 4 / 3, -4 / 3, 0.0, 0.0]
    assert A.rloo_advantages(scores, 4).tolist() == pytest.approx(expected, abs=1e-6)
    # with two samples: each is compared with the other
    assert A.rloo_advantages(torch.tensor([0.5, 0.2]), 2).tolist() == pytest.approx([0.3, -0.3], abs=1e-6)


def test_grpo_advantages_are_group_normalised():
    scores = torch.tensor([1.0, 0.0, 0.0, 0.0, 3.0, 1.0, 2.0, 2.0, 5.0, 5.0, 5.0, 5.0])
    # group 1: mean 0.25, Bessel std sqrt(0.75 / 3) = 0.5; group 2: mean 2, std sqrt(2 / 3)
    s2 = math.sqrt(2 / 3)
    eps = 1e-4
    expected = [0.75 / (0.5 + eps), -0.25 / (0.5 + eps), -0.25 / (0.5 + eps), -0.25 / (0.5 + eps),
                1 / (s2 + eps), -1 / (s2 + eps), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # group 3: all equal, no signal
    assert A.grpo_advantages(scores, 4).tolist() == pytest.approx(expected, abs=1e-6)
    unscaled = A.grpo_advantages(scores, 4, scale=False)  # Dr. GRPO: the mean shift only
    assert unscaled.tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25, 1, -1, 0, 0, 0, 0, 0, 0], abs=1e-6)


def test_group_advantages_reject_bad_groups():
    with pytest.raises(ValueError, match="groups of 4"):
        A.rloo_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="at least 2"):
        A.grpo_advantages(torch.zeros(4), 1)


def test_kl_estimators():
    logp = torch.tensor([math.log(0.5)])
    ref = torch.tensor([math.log(0.25)])  # x = log(ref / pi) = log 0.5
    x = math.log(0.5)
    assert K.kl_estimate(logp, ref, "k1").item() == pytest.approx(-x)
    assert K.kl_estimate(logp, ref, "k2").item() == pytest.approx(0.5 * x * x)
    assert K.kl_estimate(logp, ref, "k3").item() == pytest.approx(0.5 - 1 - x)  # exp(x) - 1 - x
    assert K.kl_estimate(ref, ref, "k3").item() == 0.0
    with pytest.raises(ValueError, match="k1, k2, k3"):
        K.kl_estimate(logp, ref, "k4")


def _batch():
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    old = torch.tensor([[-1.0, -2.0, 0.0], [-1.5, -0.5, -1.0]])
    return mask, old


def test_policy_gradient_loss_on_policy_token_and_sequence_means():
    mask, old = _batch()
    advantages = torch.tensor([2.0, -1.0])
    # ratio 1 everywhere: the per-token loss is -A; tokens -2, -2 | 1, 1, 1
    loss, stats = policy_gradient_loss(old.clone(), old, advantages, mask, aggregation="token")
    assert loss.item() == pytest.approx(-1 / 5)
    assert (stats.clip_fraction, stats.approx_kl, stats.ratio_mean, stats.kl) == (0.0, 0.0, 1.0, 0.0)
    loss, _ = policy_gradient_loss(old.clone(), old, advantages, mask, aggregation="sequence")
    assert loss.item() == pytest.approx((-2 + 1) / 2)


def test_policy_gradient_loss_clips_and_adds_the_kl_term():
    mask, old = _batch()
    advantages = torch.tensor([2.0, -1.0])
    logp = old.clone()
    logp[0, 0] += math.log(1.5)  # ratio 1.5 on a token with A = 2: clipped at 1.2 -> -2.4 instead of -3
    logp.requires_grad_(True)
    ref = old - math.log(2.0)  # x = ref - logp = -log 2 on the unchanged tokens: k3 = 0.5 - 1 + log 2
    k3 = 0.5 - 1 + math.log(2.0)
    x0 = -math.log(2.0) - math.log(1.5)
    k3_0 = math.exp(x0) - 1 - x0
    loss, stats = policy_gradient_loss(logp, old, advantages, mask, cliprange=0.2, ref_logprobs=ref,
                                         kl_coef=0.1, kl_estimator="k3")
    surrogate = (-2.4 - 2 + 1 + 1 + 1) / 5
    kl_mean = (k3_0 + 4 * k3) / 5
    assert loss.item() == pytest.approx(surrogate + 0.1 * kl_mean, abs=1e-6)
    assert stats.clip_fraction == pytest.approx(1 / 5)
    assert stats.kl == pytest.approx(kl_mean, abs=1e-6)
    loss.backward()
    # an unclipped token with A = -1, ratio 1: d/dlogp = (-A * 1 + 0.1 * (1 - exp(x))) / 5, exp(x) = 1/2
    assert logp.grad[1, 0].item() == pytest.approx((1 + 0.1 * 0.5) / 5, abs=1e-6)
    # the clipped token: only the KL term moves it
    assert logp.grad[0, 0].item() == pytest.approx(0.1 * (1 - math.exp(x0)) / 5, abs=1e-6)
    assert logp.grad[0, 2].item() == 0.0  # masked out
