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


def test_margin_leans_with_a_soft_label():
    # z = gap - (2p - 1) * margin, margin 0.5:
    #   p = 0.8: z = 1 - 0.6 * 0.5 = 0.7  -> 0.8 softplus(-0.7) + 0.2 softplus(0.7)
    #   p = 0.5: z = -1 - 0 = -1          -> 0.5 softplus(1) + 0.5 softplus(-1)
    out = bradley_terry_loss(t(RW), t(RL), margin=0.5, strength=[0.8, 0.5])
    close(out, [0.8 * softplus(-0.7) + 0.2 * softplus(0.7), 0.5 * softplus(1.0) + 0.5 * softplus(-1.0)])


def test_strength_zero_with_a_margin_is_the_swapped_hard_pair():
    # p = 0, margin 0.5: z = 1 + 0.5 = 1.5, loss softplus(1.5); swapped, p = 1: z = -1 - 0.5, softplus(1.5)
    out = bradley_terry_loss(t([2.0]), t([1.0]), margin=0.5, strength=[0.0])
    swapped = bradley_terry_loss(t([1.0]), t([2.0]), margin=0.5)
    close(out, [softplus(1.5)])
    close(swapped, [softplus(1.5)])


def test_a_tie_at_equal_rewards_has_zero_gradient_even_with_a_margin():
    # p = 0.5: the margin is scaled to 0, z = 0, dL/dz = -(p - sigmoid(z)) = -(0.5 - 0.5) = 0.
    # (Subtracting the full margin 1 gave z = -1 and dL/dr_w = -(0.5 - sigmoid(-1)) = -0.231: a push
    # toward r_w - r_l = +1 for a pair the label calls a tie.)
    rw, rl = t([0.3], True), t([0.3], True)
    bradley_terry_loss(rw, rl, margin=1.0, strength=[0.5]).sum().backward()
    assert rw.grad.item() == pytest.approx(0.0, abs=1e-15) and rl.grad.item() == pytest.approx(0.0, abs=1e-15)
    # a hard label at equal rewards still pushes: dL/dr_w = -(1 - sigmoid(-1)) = -0.7310585786
    rw, rl = t([0.3], True), t([0.3], True)
    bradley_terry_loss(rw, rl, margin=1.0).sum().backward()
    assert rw.grad.item() == pytest.approx(-0.7310585786300049, abs=1e-12)


def test_the_trainer_gives_a_tie_no_margin():
    from types import SimpleNamespace

    from alignkit.core.engine import TrainerConfig
    from alignkit.plugins.reward.trainer import RewardConfig, RewardTask

    task = RewardTask(RewardConfig(margin=1.0), [], [], TrainerConfig(), pad_id=0)
    rw, rl = t([[0.3], [0.3]], True), t([[0.3], [0.3]], True)  # [pairs, heads]
    losses, _ = task._losses(rw, rl, [SimpleNamespace(strength=0.5), SimpleNamespace(strength=1.0)])
    losses.sum().backward()
    # the tie: no gradient; the hard pair: -(1 - sigmoid(-1)) as above
    assert rw.grad[:, 0].tolist() == pytest.approx([0.0, -0.7310585786300049], abs=1e-6)


def test_centering_adds_the_squared_sum():
    # 0.1 * 3^2 = 0.9 and 0.1 * 2^2 = 0.4
    close(bradley_terry_loss(t(RW), t(RL), centering=0.1), [softplus(-1.0) + 0.9, softplus(1.0) + 0.4])


def test_all_terms_together():
    # p = 0.9 scales the margin by 2p - 1 = 0.8: z = 1 - 0.8 * 0.25 = 0.8; c = 0.05 * 3^2 = 0.45
    expected = 0.9 * softplus(-0.8) + 0.1 * softplus(0.8) + 0.45
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
    # pair 1 has p = 0, margin 1: the rejected side must win by 1, z = gap + 1 = 0, 1, 1.5; loss = softplus(z)
    close(out[1], [softplus(0.0), softplus(1.0), softplus(1.5)])
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
