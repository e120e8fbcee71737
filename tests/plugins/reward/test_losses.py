"""Bradley-Terry loss and accuracy against values worked out by hand with ``math``."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.plugins.reward.losses import bradley_terry_loss, preference_accuracy

# Two pairs: z = r_w - r_l = +1.0 and -1.0; r_w + r_l = 3.0 and 2.0.
RW = [2.0, 0.5]
RL = [1.0, 1.5]


def t(values, grad=False):
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


def softplus(x: float) -> float:
    """-log sigmoid(-x) = log(1 + e^x)."""
    return math.log1p(math.exp(x))


def close(actual: torch.Tensor, expected: list[float]) -> None:
    assert actual.tolist() == pytest.approx(expected, abs=1e-12)


def test_hard_labels_are_minus_log_sigmoid_of_the_gap():
    close(bradley_terry_loss(t(RW), t(RL)), [softplus(-1.0), softplus(1.0)])
    # 0.3132616875 and 1.3132616875: a right order costs less than a wrong one
    assert bradley_terry_loss(t(RW), t(RL))[0].item() == pytest.approx(0.3132616875182228)


def test_margin_is_subtracted_from_the_gap():
    # z = 1 - 0.5 = 0.5 and -1 - 0.5 = -1.5
    close(bradley_terry_loss(t(RW), t(RL), margin=0.5), [softplus(-0.5), softplus(1.5)])
    # per-pair margins
    close(bradley_terry_loss(t(RW), t(RL), margin=[0.0, 2.0]), [softplus(-1.0), softplus(3.0)])


def test_soft_labels_are_cross_entropy_against_strength():
    # p = 0.8: -(0.8 log s(1) + 0.2 log s(-1)) = 0.8 * softplus(-1) + 0.2 * softplus(1)
    # p = 0.0: the rejected answer is the preferred one: softplus(z) = softplus(-1) for z=-1
    out = bradley_terry_loss(t(RW), t(RL), strength=[0.8, 0.0])
    close(out, [0.8 * softplus(-1.0) + 0.2 * softplus(1.0), softplus(-1.0)])
    assert out[0].item() == pytest.approx(0.5132616875182228)


def test_centering_adds_the_squared_sum():
    # 0.1 * 3^2 = 0.9 and 0.1 * 2^2 = 0.4
    close(bradley_terry_loss(t(RW), t(RL), centering=0.1), [softplus(-1.0) + 0.9, softplus(1.0) + 0.4])


def test_all_terms_together():
    # z = 1 - 0.25 = 0.75, p = 0.9, c = 0.05 * 9
    expected = 0.9 * softplus(-0.75) + 0.1 * softplus(0.75) + 0.45
    out = bradley_terry_loss(t([2.0]), t([1.0]), margin=0.25, strength=[0.9], centering=0.05)
    close(out, [expected])


def test_gradient_pushes_chosen_up_and_rejected_down():
    rw, rl = t([0.0], True), t([0.0], True)
    bradley_terry_loss(rw, rl).sum().backward()
    # d/dz softplus(-z) at 0 = -sigmoid(0) = -0.5
    assert rw.grad.item() == pytest.approx(-0.5) and rl.grad.item() == pytest.approx(0.5)


def test_gradient_vanishes_where_the_model_matches_a_soft_label():
    # z = 1: sigmoid(1) = 0.7310585786; with p equal to it the loss is at its minimum in z
    rw, rl = t([1.0], True), t([0.0], True)
    bradley_terry_loss(rw, rl, strength=[1 / (1 + math.exp(-1.0))]).sum().backward()
    assert rw.grad.item() == pytest.approx(0.0, abs=1e-12)
    rw2, rl2 = t([1.0], True), t([0.0], True)
    bradley_terry_loss(rw2, rl2, strength=[0.2]).sum().backward()
    assert rw2.grad.item() > 0 > rl2.grad.item(), "a label below sigmoid(z) pulls the gap back down"


def test_centering_gradient_pulls_both_rewards_towards_zero():
    # equal rewards and p = 0.5: the Bradley-Terry part has zero gradient; centering: 2*c*(rw+rl) = 2*0.1*2
    rw, rl = t([1.0], True), t([1.0], True)
    bradley_terry_loss(rw, rl, strength=[0.5], centering=0.1).sum().backward()
    assert rw.grad.item() == pytest.approx(0.4) and rl.grad.item() == pytest.approx(0.4)


def test_heads_broadcast_against_per_pair_labels():
    rw = t([[2.0, 1.0, 0.0], [0.5, 0.5, 0.5]])
    rl = t([[1.0, 1.0, 1.0], [1.5, 0.5, 0.0]])
    out = bradley_terry_loss(rw, rl, strength=[1.0, 0.0], margin=[0.0, 1.0])
    assert out.shape == (2, 3)
    # pair 1 has p = 0, margin 1: loss = softplus(z) with z = gap - 1
    close(out[1], [softplus(-2.0), softplus(-1.0), softplus(-0.5)])
    close(out[0], [softplus(-1.0), softplus(0.0), softplus(1.0)])


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="strength"):
        bradley_terry_loss(t(RW), t(RL), strength=[1.2, 0.5])
    with pytest.raises(ValueError, match="centering"):
        bradley_terry_loss(t(RW), t(RL), centering=-1)
    with pytest.raises(ValueError, match="shape"):
        bradley_terry_loss(t(RW), t([1.0]))
    with pytest.raises(ValueError, match="margin"):
        bradley_terry_loss(t(RW), t(RL), margin=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="floating"):
        bradley_terry_loss(torch.tensor([1, 2]), torch.tensor([0, 1]))


def test_accuracy_follows_the_label_direction_and_counts_ties_as_wrong():
    rw, rl = torch.tensor([2.0, 0.0, 1.0, 3.0]), torch.tensor([1.0, 1.0, 1.0, 0.0])
    # pair 0 right, pair 1 wrong, pair 2 a tie (wrong), pair 3 right
    assert preference_accuracy(rw, rl) == 0.5
    # strength < 0.5 means the rejected answer is the better one: pair 1 becomes right, pair 0 wrong
    assert preference_accuracy(rw, rl, [0.2, 0.3, 1.0, 1.0]) == 0.5
    assert preference_accuracy(rw, rl, [1.0, 0.3, 1.0, 1.0]) == 0.75
    # strength 0.5 carries no order: left out
    assert preference_accuracy(rw, rl, [1.0, 0.5, 0.5, 1.0]) == 1.0
    assert math.isnan(preference_accuracy(rw, rl, [0.5] * 4))
