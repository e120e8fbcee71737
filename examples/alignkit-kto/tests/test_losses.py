"""KTO's loss against the paper's formula on hand-computed numbers."""

import math

import pytest
import torch

from alignkit_kto.losses import kl_reference_point, kto_loss, mismatched_partners, weight_balance


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_loss_matches_equation_8_by_hand():
    policy = torch.tensor([-1.0, -2.0])
    reference = torch.tensor([-1.5, -1.0])
    losses, rewards = kto_loss(policy, reference, torch.tensor([True, False]), torch.tensor(0.2),
                               beta=0.5, desirable_weight=1.0, undesirable_weight=2.0)
    # r = [0.5, -1.0]; desirable: 1 - s(0.5 * (0.5 - 0.2)); undesirable: 2 - 2 s(0.5 * (0.2 + 1.0))
    assert losses.tolist() == pytest.approx([1 - sigmoid(0.15), 2 - 2 * sigmoid(0.6)], abs=1e-6)
    assert rewards.tolist() == pytest.approx([0.25, -0.5])


def test_gradients_raise_desirable_and_lower_undesirable_log_probs():
    policy = torch.tensor([-3.0, -3.0], requires_grad=True)
    losses, _ = kto_loss(policy, torch.tensor([-3.0, -3.0]), torch.tensor([True, False]), torch.tensor(0.0), beta=0.1)
    losses.sum().backward()
    assert policy.grad[0] < 0 < policy.grad[1]


def test_reference_point_is_the_clamped_mean_and_carries_no_gradient():
    policy = torch.tensor([-1.0, -2.0], requires_grad=True)
    z0 = kl_reference_point(policy, torch.tensor([-1.3, -1.9]))
    assert float(z0) == pytest.approx(0.1) and not z0.requires_grad
    assert float(kl_reference_point(torch.tensor([-2.0]), torch.tensor([-1.0]))) == 0.0  # clamped at 0
    assert float(kl_reference_point(torch.zeros(0), torch.zeros(0))) == 0.0


def test_z0_shifts_the_reference_point():
    args = (torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([True]))
    low, _ = kto_loss(*args, torch.tensor(0.0), beta=1.0)
    high, _ = kto_loss(*args, torch.tensor(1.0), beta=1.0)
    assert float(high) == pytest.approx(1 - sigmoid(-1.0)) and float(high) > float(low)


def test_mismatched_partners_skip_examples_with_the_same_prompt():
    assert mismatched_partners(["p1", "p1", "p2", "p2"]) == [2, 2, 0, 0]
    assert mismatched_partners(["a", "b", "c"]) == [1, 2, 0]
    assert mismatched_partners(["same", "same"]) == [0, 1]  # no other prompt: itself
    assert mismatched_partners([]) == []


def test_weight_balance_is_the_papers_ratio():
    assert weight_balance(10, 10, 1.0, 1.0) == 1.0
    assert weight_balance(30, 10, 1.0, 3.0) == 1.0
    assert weight_balance(5, 0, 1.0, 1.0) == math.inf
