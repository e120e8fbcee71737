"""The built-in policy losses (plugins/rl/policy_losses.py) against hand-computed values and
TRL 1.16's GRPO loss, and each of them through ``PolicyLossContract``."""

import math

import pytest
import torch

from alignkit.core import PolicyLossEntry
from alignkit.core.rl import PolicyLossInputs, PolicyLossOutputs, aggregate
from alignkit.core.testing import PolicyLossContract
from alignkit.plugins.rl import policy_losses as P

LN = math.log


def close(actual, expected, atol=1e-6):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), atol=atol, rtol=0)


def t(rows, grad=False):
    return torch.tensor(rows, dtype=torch.float64, requires_grad=grad)


def loss_inputs(new, old, advantages, mask, ref=None, **options):
    return PolicyLossInputs(logprobs=t(new, grad=True), old_logprobs=t(old), advantages=t(advantages),
                            mask=t(mask), ref_logprobs=None if ref is None else t(ref), options=options)


# -- ppo_clip ----------------------------------------------------------------------------------


def test_ppo_clip_by_hand():
    # t0: r = 1.5, A = +1: max(-1.5, -clip(1.5) = -1.2) = -1.2 (clipped)
    # t1: r = 0.5, A = -1: max(0.5, clip(0.5) = 0.8) = 0.8 (clipped); t2 is off the mask
    # approx_kl = mean((r - 1) - ln r) = ((0.5 - ln 1.5) + (-0.5 - ln 0.5)) / 2 = 0.1438410
    x = loss_inputs([[LN(1.5), LN(0.5), 9.0]], [[0.0, 0.0, 0.0]], [[1.0, -1.0, 0.0]], [[1, 1, 0]], cliprange=0.2)
    out = P.ppo_clip(x)
    close(out.per_token, [[-1.2, 0.8, 0.0]])
    assert out.metrics["clip_fraction"] == pytest.approx(1.0)
    assert out.metrics["ratio_mean"] == pytest.approx(1.0)
    assert out.metrics["approx_kl"] == pytest.approx(0.1438410, abs=1e-7)
    assert out.metrics["kl"] == 0.0
    (out.per_token * x.mask).sum().backward()
    close(x.logprobs.grad, [[0.0, 0.0, 0.0]])  # both tokens clipped: no gradient


def test_ppo_clip_higher_clips_the_two_sides_apart():
    # clip_low 0.2, clip_high 0.28 (DAPO): the ratio lives in [0.8, 1.28]
    # t0: r = 1.25, A = +1 -> -1.25, inside: not clipped (clip 0.2 on both sides would give -1.2)
    # t1: r = 1.5,  A = +1 -> max(-1.5, -1.28) = -1.28, clipped
    # t2: r = 0.7,  A = -1 -> max(0.7, 0.8) = 0.8, clipped
    new, old, adv, mask = [[LN(1.25), LN(1.5), LN(0.7)]], [[0.0] * 3], [[1.0, 1.0, -1.0]], [[1, 1, 1]]
    out = P.ppo_clip(loss_inputs(new, old, adv, mask, clip_low=0.2, clip_high=0.28))
    close(out.per_token, [[-1.25, -1.28, 0.8]])
    assert out.metrics["clip_fraction"] == pytest.approx(2 / 3)
    symmetric = P.ppo_clip(loss_inputs(new, old, adv, mask, cliprange=0.2))
    close(symmetric.per_token, [[-1.2, -1.2, 0.8]])


@pytest.mark.parametrize(("estimator", "term"), [
    ("k1", -0.1 * LN(2)),  # k1 = -x = -ln 2
    ("k2", 0.1 * 0.5 * LN(2) ** 2),  # k2 = x^2 / 2 = 0.2402265
    ("k3", 0.1 * (2 - 1 - LN(2))),  # k3 = e^x - 1 - x = 0.3068528
])
def test_the_kl_term_in_the_loss(estimator, term):
    # x = ref - new = ln 2 on t0 and 0 on t1; advantages 0, so only kl_coef (0.1) * kl_t remains
    args = ([[0.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]], [[1, 1]], [[LN(2), 0.0]])
    out = P.ppo_clip(loss_inputs(*args, kl_in_loss=True, kl_coef=0.1, kl_estimator=estimator))
    close(out.per_token, [[term, 0.0]])
    assert out.metrics["kl"] == pytest.approx(term / 0.1 / 2)
    assert P.ppo_clip(loss_inputs(*args, kl_coef=0.1)).per_token.abs().sum() == 0  # kl_in_loss off: none


def test_ppo_clip_against_trl_with_clip_higher_and_k3(trl_grpo_loss, random_batch):
    b = random_batch(1, [5, 3, 1, 4], 5)
    expected, metrics = trl_grpo_loss("dapo", b.trl_new, b.old, b.advantages, b.mask, ref_logprobs=b.ref, beta=0.04,
                                      epsilon=0.2, epsilon_high=0.28)
    out = P.ppo_clip(PolicyLossInputs(b.new, b.old, b.advantages[:, None] * b.mask, b.mask, b.ref, {
        "clip_low": 0.2, "clip_high": 0.28, "kl_in_loss": True, "kl_coef": 0.04, "kl_estimator": "k3"}))
    numerator, denominator = aggregate(out.per_token, b.mask, "token_mean", 5)
    loss = numerator / denominator
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=0)
    loss.backward(), expected.backward()
    torch.testing.assert_close(b.new.grad, b.trl_new.grad, atol=1e-6, rtol=0)
    assert out.metrics["clip_fraction"] == pytest.approx(metrics["clip_ratio/region_mean"], abs=1e-6)
    assert out.metrics["kl"] == pytest.approx(metrics["kl"], abs=1e-6)


# -- gspo --------------------------------------------------------------------------------------


def test_gspo_by_hand():
    # row 0: log-ratios 0.6, 0.2, 0.4 -> mean 0.4, s = e^0.4 = 1.4918247; A = +1: max(-1.49, -1.2) = -1.2 (clipped)
    # row 1: log-ratios 0.3, -0.1 (t2 off the mask) -> mean 0.1, s = e^0.1 = 1.1051709; A = -1:
    #        max(1.105, clip 1.105) = 1.1051709 (inside [0.8, 1.2]); each token's gradient -A * s = 1.1051709
    x = loss_inputs([[0.6, 0.2, 0.4], [0.3, -0.1, 5.0]], [[0.0] * 3] * 2, [[1.0] * 3, [-1.0, -1.0, 0.0]],
                    [[1, 1, 1], [1, 1, 0]], cliprange=0.2)
    out = P.gspo(x)
    close(out.per_token, [[-1.2, -1.2, -1.2], [1.1051709, 1.1051709, 0.0]], atol=1e-7)
    assert out.metrics["clip_fraction"] == pytest.approx(3 / 5)
    (out.per_token * x.mask).sum().backward()
    close(x.logprobs.grad, [[0.0, 0.0, 0.0], [1.1051709, 1.1051709, 0.0]], atol=1e-7)


@pytest.mark.parametrize("aggregation", ["sequence_mean", "token_mean"])
def test_gspo_against_trl_sequence_level(trl_grpo_loss, random_batch, aggregation):
    # TRL's importance_sampling_level="sequence" with loss_type grpo (the GSPO paper's sequence
    # mean) or bnpo (token mean): the same loss and the same gradient
    b = random_batch(2, [6, 2, 5, 3], 6, spread=0.15)
    loss_type = {"sequence_mean": "grpo", "token_mean": "bnpo"}[aggregation]
    expected, _ = trl_grpo_loss(loss_type, b.trl_new, b.old, b.advantages, b.mask, level="sequence",
                                epsilon=3e-4, epsilon_high=4e-4)
    out = P.gspo(PolicyLossInputs(b.new, b.old, b.advantages[:, None] * b.mask, b.mask, None,
                                  {"clip_low": 3e-4, "clip_high": 4e-4}))
    numerator, denominator = aggregate(out.per_token, b.mask, aggregation, 6)
    loss = numerator / denominator
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=0)
    loss.backward(), expected.backward()
    torch.testing.assert_close(b.new.grad, b.trl_new.grad, atol=1e-6, rtol=0)
    assert 0 < out.metrics["clip_fraction"] < 1  # the clip range is narrow enough to bind on some rows


# -- reinforce ---------------------------------------------------------------------------------


def test_reinforce_by_hand():
    # -A * log pi: -(0.5)(-1) = 0.5, -(-1)(-2) = -2; gradient -A: -0.5, 1; t2 off the mask
    x = loss_inputs([[-1.0, -2.0, -30.0]], [[-1.0, -1.0, -1.0]], [[0.5, -1.0, 0.0]], [[1, 1, 0]])
    out = P.reinforce(x)
    close(out.per_token, [[0.5, -2.0, 0.0]])
    (out.per_token * x.mask).sum().backward()
    close(x.logprobs.grad, [[-0.5, 1.0, 0.0]])
    assert out.metrics["clip_fraction"] == 0.0
    assert out.metrics["ratio_mean"] == pytest.approx((1 + math.exp(-1)) / 2)


# -- dpo_pairwise ------------------------------------------------------------------------------


def test_dpo_pairwise_by_hand():
    # pair 0: chosen (row 0, tokens at t1, t2) sums -1 - 1 = -2, its reference -1.5 - 1.5 = -3;
    #         rejected (row 1, one token) -4 against -3. h = (-2 + 3) - (-4 + 3) = 2, z = 0.1 * 2 = 0.2,
    #         sigmoid loss = log(1 + e^-0.2) = 0.5981389, on row 0's first response token (t1)
    # pair 1: both rows advantage 0, a stand-in: weighs nothing
    x = loss_inputs([[9.0, -1.0, -1.0], [-4.0, 0.0, 0.0], [-1.0, -1.0, -1.0], [-2.0, -2.0, -2.0]],
                    [[0.0] * 3] * 4, [[0.0, 1.0, 1.0], [-1.0, 0.0, 0.0], [0.0] * 3, [0.0] * 3],
                    [[0, 1, 1], [1, 0, 0], [1, 1, 1], [1, 1, 1]],
                    ref=[[0.0, -1.5, -1.5], [-3.0, 0.0, 0.0], [-1.0] * 3, [-1.0] * 3], beta=0.1)
    out = P.dpo_pairwise(x)
    close(out.per_token, [[0.0, 0.5981389, 0.0], [0.0] * 3, [0.0] * 3, [0.0] * 3], atol=1e-7)
    assert out.metrics["pairs"] == 1.0
    assert out.metrics["rewards/chosen"] == pytest.approx(0.1) and out.metrics["rewards/rejected"] == pytest.approx(-0.1)
    assert out.metrics["rewards/margin"] == pytest.approx(0.2) and out.metrics["rewards/accuracy"] == 1.0
    assert out.metrics["length/chosen"] == 2.0 and out.metrics["length/rejected"] == 1.0


def test_dpo_pairwise_simpo_needs_no_reference():
    # SimPO, beta 1, gamma 0: chosen -2 / 2 tokens = -1, rejected -4 / 1 token = -4; z = 3, loss = log(1 + e^-3) = 0.0485874
    x = loss_inputs([[-1.0, -1.0], [-4.0, 0.0]], [[0.0] * 2] * 2, [[1.0, 1.0], [-1.0, 0.0]], [[1, 1], [1, 0]],
                    loss_type="simpo", beta=1.0)
    close(P.dpo_pairwise(x).per_token, [[0.0485874, 0.0], [0.0, 0.0]], atol=1e-7)
    with pytest.raises(ValueError, match="loss_type=sigmoid compares with the reference's log-probs"):
        P.dpo_pairwise(loss_inputs([[-1.0], [-2.0]], [[0.0]] * 2, [[1.0], [-1.0]], [[1], [1]]))


def test_dpo_pairwise_refuses_rows_that_are_not_chosen_then_rejected():
    with pytest.raises(ValueError, match="rows 2j and 2j\\+1 must be a chosen response"):
        P.dpo_pairwise(loss_inputs([[-1.0], [-2.0]], [[0.0]] * 2, [[-1.0], [1.0]], [[1], [1]], ref=[[0.0]] * 2))
    with pytest.raises(ValueError, match="3 rows are not pairs"):
        P.dpo_pairwise(loss_inputs([[-1.0]] * 3, [[0.0]] * 3, [[1.0]] * 3, [[1]] * 3, ref=[[0.0]] * 3))


# -- every built-in keeps the contract ---------------------------------------------------------


class TestPPOClipContract(PolicyLossContract):
    name = "ppo_clip"
    options = {"clip_low": 0.2, "clip_high": 0.28, "kl_in_loss": True, "kl_coef": 0.05}


class TestGSPOContract(PolicyLossContract):
    name = "gspo"
    options = {"kl_in_loss": True, "kl_coef": 0.05}


class TestReinforceContract(PolicyLossContract):
    name = "reinforce"
    options = {"kl_in_loss": True, "kl_coef": 0.05}


class TestDPOPairwiseContract(PolicyLossContract):
    name = "dpo_pairwise"


# -- the contract catches what it promises to ----------------------------------------------------


def _leaky(x):
    """A broken loss: the advantages and old log-probs keep their gradient."""
    return PolicyLossOutputs(per_token=-x.advantages * torch.exp(x.logprobs - x.old_logprobs))


def test_the_contract_fails_a_loss_that_leaks_a_gradient():
    entry = PolicyLossEntry("leaky", loss=_leaky, description="broken")
    with pytest.raises(AssertionError, match="a gradient leaks into old_logprobs"):
        PolicyLossContract().test_the_gradient_reaches_only_the_policy_log_probs(entry)
