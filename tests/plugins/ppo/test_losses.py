"""PPO's pure functions (plugins/rl: advantages.py, policy_losses.py, critic.py, kl.py) against hand-computed values and a plain-Python reference loop."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest
import torch

from alignkit.core.rl import PolicyLossInputs, aggregate, masked_mean
from alignkit.core.running_moments import RunningMoments
from alignkit.plugins.rl.advantages import compute_gae, shaped_rewards, whiten
from alignkit.plugins.rl.critic import explained_variance, masked_var, value_loss
from alignkit.plugins.rl.kl import AdaptiveKLController, FixedKLController, per_token_kl
from alignkit.plugins.rl.policy_losses import ppo_clip


def policy_loss(new, old, advantages, mask, cliprange=0.2):
    """``ppo_clip`` averaged over the response tokens, as the RL loop aggregates it (token_mean)."""
    out = ppo_clip(PolicyLossInputs(new, old, advantages, mask, options={"cliprange": cliprange}))
    numerator, denominator = aggregate(out.per_token, mask, "token_mean", mask.shape[1])
    return numerator / denominator, SimpleNamespace(**out.metrics)


def penalised_rewards(scores, kl, mask, kl_coef):
    """PPO's per-token rewards: the KL penalty on every token, the score on the last one."""
    return shaped_rewards(scores, kl_coef * kl, mask)


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def gae_loop(rewards, values, mask, gamma, lam):
    """Textbook GAE per sequence, over the masked-in positions only, in plain Python."""
    adv_rows, ret_rows = [], []
    for r, v, m in zip(rewards, values, mask):
        steps = [i for i, x in enumerate(m) if x]
        adv = [0.0] * len(m)
        running = 0.0
        for k in reversed(range(len(steps))):
            i = steps[k]
            next_v = v[steps[k + 1]] if k + 1 < len(steps) else 0.0
            delta = r[i] + gamma * next_v - v[i]
            running = delta + gamma * lam * running
            adv[i] = running
        adv_rows.append(adv)
        ret_rows.append([a + vv if x else 0.0 for a, vv, x in zip(adv, v, m)])
    return adv_rows, ret_rows


# ---------------------------------------------------------------------------------------
# GAE
# ---------------------------------------------------------------------------------------


def test_gae_by_hand_one_sequence():
    # rewards [0, 0, 1], values [0.5, 0.25, 0.75], gamma 0.5, lam 0.5 (gamma*lam = 0.25)
    # delta_2 = 1 + 0.5*0 - 0.75       = 0.25   A_2 = 0.25
    # delta_1 = 0 + 0.5*0.75 - 0.25    = 0.125  A_1 = 0.125 + 0.25*0.25  = 0.1875
    # delta_0 = 0 + 0.5*0.25 - 0.5     = -0.375 A_0 = -0.375 + 0.25*0.1875 = -0.328125
    adv, ret = compute_gae(t([[0, 0, 1]]), t([[0.5, 0.25, 0.75]]), t([[1, 1, 1]]), gamma=0.5, lam=0.5)
    assert adv.tolist() == [[-0.328125, 0.1875, 0.25]]
    assert ret.tolist() == [[0.171875, 0.4375, 1.0]]


def test_gae_with_gamma_and_lambda_one_is_reward_to_go_minus_value():
    rewards = t([[0.1, -0.2, 0.3, 2.0, 0.0]])
    values = t([[1.0, 0.5, -0.5, 0.25, 9.0]])
    mask = t([[1, 1, 1, 1, 0]])  # the last position is padding: its value must not leak in
    adv, ret = compute_gae(rewards, values, mask, gamma=1.0, lam=1.0)
    to_go = [2.2, 2.1, 2.3, 2.0]
    assert adv[0, :4].tolist() == pytest.approx([g - v for g, v in zip(to_go, [1.0, 0.5, -0.5, 0.25])])
    assert ret[0, :4].tolist() == pytest.approx(to_go)
    assert adv[0, 4] == 0 and ret[0, 4] == 0


def test_gae_with_lambda_zero_is_the_one_step_td_error():
    rewards, values = t([[1.0, 2.0, 3.0]]), t([[0.5, 1.5, 2.5]])
    adv, _ = compute_gae(rewards, values, t([[1, 1, 1]]), gamma=0.9, lam=0.0)
    assert adv.tolist()[0] == pytest.approx([1.0 + 0.9 * 1.5 - 0.5, 2.0 + 0.9 * 2.5 - 1.5, 3.0 - 2.5])


@pytest.mark.parametrize("gamma, lam", [(1.0, 0.95), (0.99, 0.9), (0.5, 1.0), (1.0, 0.0)])
def test_gae_matches_the_plain_loop_on_ragged_batches(gamma, lam):
    rng = random.Random(int(gamma * 100 + lam * 10))
    batch, width = 6, 9
    rewards = [[rng.uniform(-1, 1) for _ in range(width)] for _ in range(batch)]
    values = [[rng.uniform(-1, 1) for _ in range(width)] for _ in range(batch)]
    mask = []
    for b in range(batch):
        length = rng.randint(1, width)
        row = [1] * length + [0] * (width - length)
        if b == 0:
            row = [0, 1, 1, 0, 1, 0, 1, 1, 0]  # gaps: the next value is the next masked-in one
        mask.append(row)
    adv, ret = compute_gae(t(rewards), t(values), t(mask), gamma, lam)
    ref_adv, ref_ret = gae_loop(rewards, values, mask, gamma, lam)
    assert torch.allclose(adv, t(ref_adv), atol=1e-12)
    assert torch.allclose(ret, t(ref_ret), atol=1e-12)


def test_gae_rejects_mismatched_shapes_and_has_no_gradient():
    with pytest.raises(ValueError, match="shapes differ"):
        compute_gae(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3))
    values = torch.zeros(1, 3, requires_grad=True)
    adv, ret = compute_gae(torch.ones(1, 3), values, torch.ones(1, 3))
    assert not adv.requires_grad and not ret.requires_grad


# ---------------------------------------------------------------------------------------
# Policy and value losses
# ---------------------------------------------------------------------------------------


def test_clipped_policy_loss_by_hand():
    # log-ratios: ln 1.5, ln 0.5, ln 1.1, 0 (masked out)  -> ratios 1.5, 0.5, 1.1
    # advantages 1, 1, -2, 100; eps 0.2
    #   token 0: A=1,  max(-1.5, -1.2) = -1.2 (clipped)
    #   token 1: A=1,  max(-0.5, -0.8) = -0.5 (unclipped: a lower ratio is not clipped for A>0)
    #   token 2: A=-2, max(2.2, 2.2)   =  2.2 (inside the range)
    # loss = (-1.2 - 0.5 + 2.2) / 3 = 1/6; clip fraction 1/3
    old = t([[0.0, 0.0, 0.0, 0.0]])
    new = t([[math.log(1.5), math.log(0.5), math.log(1.1), 3.0]])
    adv = t([[1.0, 1.0, -2.0, 100.0]])
    mask = t([[1, 1, 1, 0]])
    loss, stats = policy_loss(new, old, adv, mask, cliprange=0.2)
    assert float(loss) == pytest.approx(0.5 / 3)
    assert stats.clip_fraction == pytest.approx(1 / 3)
    k3 = [(1.5 - 1) - math.log(1.5), (0.5 - 1) - math.log(0.5), (1.1 - 1) - math.log(1.1)]
    assert stats.approx_kl == pytest.approx(sum(k3) / 3)
    assert stats.ratio_mean == pytest.approx((1.5 + 0.5 + 1.1) / 3)


def test_policy_loss_gradient_is_zero_where_clipped():
    new = torch.tensor([[math.log(1.5), math.log(1.1)]], requires_grad=True)
    loss, _ = policy_loss(new, torch.zeros(1, 2), torch.tensor([[1.0, 1.0]]), torch.ones(1, 2), 0.2)
    loss.backward()
    # d/dlogp of -A*ratio/2 = -ratio/2 for the unclipped token; 0 for the clipped one
    assert new.grad.tolist()[0] == pytest.approx([0.0, -1.1 / 2])


def test_ratio_one_gives_minus_mean_advantage():
    adv = t([[0.5, -1.5, 2.0]])
    loss, stats = policy_loss(t([[-1.0, -2.0, -3.0]]), t([[-1.0, -2.0, -3.0]]), adv, t([[1, 1, 1]]))
    assert float(loss) == pytest.approx(-1.0 / 3)
    assert stats.clip_fraction == 0 and stats.approx_kl == pytest.approx(0.0)


def test_clipped_value_loss_by_hand():
    # old values 0, 0, 1; new 0.5, -0.1, 1.0; returns 1, 1, 0; eps 0.2
    #   token 0: unclipped (0.5-1)^2 = 0.25, clipped V=0.2 -> (0.2-1)^2 = 0.64 -> 0.64 (clipped wins)
    #   token 1: unclipped (-0.1-1)^2 = 1.21, clipped -0.1 (inside) -> 1.21
    #   token 2: unclipped (1-0)^2 = 1,   clipped 1 -> 1
    # loss = 0.5 * (0.64 + 1.21 + 1) / 3 = 0.475; clip fraction 1/3
    loss, fraction = value_loss(t([[0.5, -0.1, 1.0]]), t([[0.0, 0.0, 1.0]]), t([[1.0, 1.0, 0.0]]),
                                t([[1, 1, 1]]), cliprange_value=0.2)
    assert float(loss) == pytest.approx(0.475)
    assert fraction == pytest.approx(1 / 3)
    plain, none = value_loss(t([[0.5, -0.1, 1.0]]), t([[0.0, 0.0, 1.0]]), t([[1.0, 1.0, 0.0]]),
                             t([[1, 1, 1]]), cliprange_value=0.0)
    assert float(plain) == pytest.approx(0.5 * (0.25 + 1.21 + 1) / 3) and none == 0.0


# ---------------------------------------------------------------------------------------
# Whitening, KL, rewards, statistics
# ---------------------------------------------------------------------------------------


def test_masked_statistics_and_whitening():
    x, mask = t([[1.0, 2.0, 100.0], [3.0, 4.0, -50.0]]), t([[1, 1, 0], [1, 1, 0]])
    assert float(masked_mean(x, mask)) == pytest.approx(2.5)
    assert float(masked_var(x, mask)) == pytest.approx(5.0 / 3)  # unbiased: sum sq dev 5 over n-1 = 3
    w = whiten(x, mask)
    assert w[:, 2].tolist() == [0.0, 0.0]
    assert float(masked_mean(w, mask)) == pytest.approx(0.0, abs=1e-9)
    assert float(masked_var(w, mask)) == pytest.approx(1.0, rel=1e-6)
    scaled = whiten(x, mask, shift_mean=False)
    assert scaled[0, 0] == pytest.approx(1.0 / math.sqrt(5.0 / 3), rel=1e-6)


def test_penalised_rewards_put_the_score_on_the_last_token():
    logp, ref = t([[-1.0, -2.0, -3.0], [-1.0, -1.0, 0.0]]), t([[-1.5, -1.0, -3.0], [-2.0, -1.0, 0.0]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    kl = per_token_kl(logp, ref, mask)
    assert kl.tolist() == [[0.5, -1.0, 0.0], [1.0, 0.0, 0.0]]
    rewards = penalised_rewards(t([2.0, -1.0]), kl, mask, kl_coef=0.1)
    assert rewards.flatten().tolist() == pytest.approx([-0.05, 0.1, 2.0, -0.1, -1.0, 0.0])
    with pytest.raises(ValueError, match="no tokens"):
        penalised_rewards(t([1.0]), t([[0.0]]), t([[0]]), 0.1)


def test_explained_variance():
    returns, mask = t([[1.0, 2.0, 3.0, 4.0]]), t([[1, 1, 1, 1]])
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full_like(returns, 2.5), returns, mask) == pytest.approx(0.0)
    assert math.isnan(explained_variance(returns, torch.ones_like(returns), mask))


def test_adaptive_kl_controller_follows_ziegler():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    ctl.update(current_kl=9.0, n_steps=100)  # error = clip(9/6 - 1) = 0.2 (clipped from 0.5)
    assert ctl.value == pytest.approx(0.1 * (1 + 0.2 * 100 / 10000))
    ctl.update(current_kl=4.5, n_steps=1000)  # error = -0.25 -> -0.2
    assert ctl.value == pytest.approx(0.1 * 1.002 * (1 - 0.2 * 0.1))
    ctl.update(current_kl=6.6, n_steps=10000)  # error = 0.1 (inside the clip)
    assert ctl.value == pytest.approx(0.1 * 1.002 * 0.98 * 1.1)
    restored = AdaptiveKLController(0.5, 6.0, 10000)
    restored.load_state_dict(ctl.state_dict())
    assert restored.value == ctl.value
    fixed = FixedKLController(0.2)
    fixed.update(100.0, 64)
    assert fixed.value == 0.2
    with pytest.raises(ValueError):
        AdaptiveKLController(0.1, target=0.0, horizon=10)


def test_running_moments_match_the_whole_sample():
    rng = random.Random(3)
    chunks = [torch.tensor([rng.gauss(2.0, 3.0) for _ in range(n)]) for n in (5, 1, 17, 8)]
    moments = RunningMoments()
    for chunk in chunks:
        moments.update(chunk)
    everything = torch.cat(chunks).double()
    assert moments.mean == pytest.approx(float(everything.mean()))
    assert moments.std == pytest.approx(float(everything.std(unbiased=False)))
    assert moments.count == 31
