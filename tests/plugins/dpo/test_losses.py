"""Tests for alignkit.plugins.dpo.losses.

Expected values are computed by hand with ``math`` on concrete floats, never by calling the
same torch formula; the shared fixture below is worked through in the comments.
"""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.plugins.dpo.losses import LOSS_TYPES, SOFT_LABEL_LOSS_TYPES, dpo_loss, implicit_reward_accuracy

# Two examples, float64 so hand values can be compared tightly.
#   example 0: chosen log-ratio -10 - (-11) = +1.0, rejected -12 - (-11.5) = -0.5 -> h = +1.5
#   example 1: chosen log-ratio -20 - (-19) = -1.0, rejected -15 - (-16)   = +1.0 -> h = -2.0
PC = [-10.0, -20.0]
PR = [-12.0, -15.0]
RC = [-11.0, -19.0]
RR = [-11.5, -16.0]
H = [1.5, -2.0]
CHOSEN_LEN = [30.0, 10.0]
REJECTED_LEN = [10.0, 20.0]


def logsig(x: float) -> float:
    """log(sigmoid(x)) = -log(1 + exp(-x))."""
    return -math.log(1.0 + math.exp(-x))


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def t(values, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=requires_grad)


def batch(requires_grad: bool = False):
    return t(PC, requires_grad), t(PR, requires_grad), t(RC), t(RR)


def assert_close(actual: torch.Tensor, expected: list[float], tol: float = 1e-12) -> None:
    assert actual.shape == (len(expected),)
    for a, e in zip(actual.tolist(), expected, strict=True):
        assert a == pytest.approx(e, abs=tol, rel=tol)


def policy_grads(pc: float, pr: float, rc: float, rr: float, **kwargs) -> tuple[float, float]:
    """d loss / d policy_chosen and d loss / d policy_rejected for a single example."""
    pc_t, pr_t = t([pc], True), t([pr], True)
    ref_c = None if rc is None else t([rc])
    ref_r = None if rr is None else t([rr])
    losses, _, _ = dpo_loss(pc_t, pr_t, ref_c, ref_r, **kwargs)
    losses.sum().backward()
    return pc_t.grad.item(), pr_t.grad.item()


# ----------------------------------------------------------------------------- pinned values


def test_loss_types_tuple():
    assert set(LOSS_TYPES) == {"sigmoid", "cdpo", "robust", "ipo", "rdpo", "simpo", "hinge"}
    assert isinstance(LOSS_TYPES, tuple)


def test_sigmoid_values_and_rewards():
    losses, cr, rr = dpo_loss(*batch(), beta=0.1)
    # z = 0.1 * h = 0.15, -0.2
    assert_close(losses, [math.log(1 + math.exp(-0.15)), math.log(1 + math.exp(0.2))])
    # rewards = beta * (policy - reference)
    assert_close(cr, [0.1 * 1.0, 0.1 * -1.0])
    assert_close(rr, [0.1 * -0.5, 0.1 * 1.0])
    assert not cr.requires_grad and not rr.requires_grad


def test_sigmoid_label_smoothing_is_cdpo():
    eps = 0.1
    expected = [-(0.9 * logsig(z) + 0.1 * logsig(-z)) for z in (0.15, -0.2)]
    sig_losses, _, _ = dpo_loss(*batch(), beta=0.1, label_smoothing=eps)
    cdpo_losses, _, _ = dpo_loss(*batch(), beta=0.1, loss_type="cdpo", label_smoothing=eps)
    assert_close(sig_losses, expected)
    assert_close(cdpo_losses, expected)


def test_cdpo_eps_zero_is_sigmoid():
    a, _, _ = dpo_loss(*batch(), beta=0.1, loss_type="cdpo")
    b, _, _ = dpo_loss(*batch(), beta=0.1)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_sigmoid_soft_labels_values():
    s = [0.8, 0.3]
    losses, _, _ = dpo_loss(*batch(), beta=0.1, strength=t(s))
    expected = [-(0.8 * logsig(0.15) + 0.2 * logsig(-0.15)), -(0.3 * logsig(-0.2) + 0.7 * logsig(0.2))]
    assert_close(losses, expected)


def test_soft_labels_compose_with_label_smoothing():
    # target = (1 - eps) * s + eps * (1 - s) = 0.9 * 0.8 + 0.1 * 0.2 = 0.74
    losses, _, _ = dpo_loss(*batch(), beta=0.1, strength=[0.8, 0.8], label_smoothing=0.1)
    assert losses[0].item() == pytest.approx(-(0.74 * logsig(0.15) + 0.26 * logsig(-0.15)), abs=1e-12)


def test_strength_one_equals_plain_sigmoid():
    soft, cr_s, rr_s = dpo_loss(*batch(), beta=0.3, strength=t([1.0, 1.0]))
    hard, cr_h, rr_h = dpo_loss(*batch(), beta=0.3)
    torch.testing.assert_close(soft, hard, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(cr_s, cr_h)
    torch.testing.assert_close(rr_s, rr_h)


def test_strength_zero_swaps_chosen_and_rejected():
    pc, pr, rc, rr = batch()
    flipped, _, _ = dpo_loss(pc, pr, rc, rr, beta=0.3, strength=[0.0, 0.0])
    swapped, _, _ = dpo_loss(pr, pc, rr, rc, beta=0.3)
    torch.testing.assert_close(flipped, swapped, rtol=1e-14, atol=1e-14)


def test_robust_values():
    eps = 0.2
    losses, _, _ = dpo_loss(*batch(), beta=0.1, loss_type="robust", label_smoothing=eps)
    expected = [((0.8 * -logsig(z)) - (0.2 * -logsig(-z))) / 0.6 for z in (0.15, -0.2)]
    assert_close(losses, expected)


def test_robust_eps_zero_equals_sigmoid():
    a, _, _ = dpo_loss(*batch(), beta=0.1, loss_type="robust")
    b, _, _ = dpo_loss(*batch(), beta=0.1)
    torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14)


def test_robust_is_unbiased_under_label_flips():
    # E over a flip with probability eps of the robust loss == the clean DPO loss.
    eps, beta = 0.3, 0.5
    pc, pr, rc, rr = batch()
    kept, _, _ = dpo_loss(pc, pr, rc, rr, beta=beta, loss_type="robust", label_smoothing=eps)
    flipped, _, _ = dpo_loss(pr, pc, rr, rc, beta=beta, loss_type="robust", label_smoothing=eps)
    expected = [-logsig(beta * h) for h in H]
    assert_close((1 - eps) * kept + eps * flipped, expected, tol=1e-12)


def test_ipo_sequence_level_values():
    # no lengths: h on summed log-probs; beta = 0.1 -> target 1 / 0.2 = 5
    losses, cr, rr = dpo_loss(*batch(), beta=0.1, loss_type="ipo")
    assert_close(losses, [(1.5 - 5.0) ** 2, (-2.0 - 5.0) ** 2])  # 12.25, 49
    assert_close(cr, [0.1, -0.1])
    assert_close(rr, [-0.05, 0.1])


def test_ipo_length_averaged_values():
    # example 0: (1.0 / 10) - (-0.5 / 5) = 0.2; example 1: (-1.0 / 4) - (1.0 / 2) = -0.75
    # beta = 0.5 -> target 1.0
    losses, cr, rr = dpo_loss(
        *batch(), beta=0.5, loss_type="ipo", chosen_lengths=[10, 4], rejected_lengths=torch.tensor([5, 2])
    )
    assert_close(losses, [(0.2 - 1.0) ** 2, (-0.75 - 1.0) ** 2])  # 0.64, 3.0625
    # rewards are the per-token log-ratios times beta, so chosen - rejected == beta * h
    assert_close(cr, [0.5 * 0.1, 0.5 * -0.25])
    assert_close(rr, [0.5 * -0.1, 0.5 * 0.5])


def test_ipo_unit_lengths_match_sequence_level():
    a, _, _ = dpo_loss(*batch(), beta=0.2, loss_type="ipo", chosen_lengths=[1, 1], rejected_lengths=[1, 1])
    b, _, _ = dpo_loss(*batch(), beta=0.2, loss_type="ipo")
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_rdpo_values():
    # logit = beta*h + alpha*(|y_w| - |y_l|): ex0 0.15 + 0.05*20 = 1.15; ex1 -0.2 + 0.05*(-10) = -0.7
    losses, cr, rr = dpo_loss(
        *batch(), beta=0.1, loss_type="rdpo", alpha=0.05, chosen_lengths=CHOSEN_LEN, rejected_lengths=REJECTED_LEN
    )
    assert_close(losses, [-logsig(1.15), -logsig(-0.7)])
    assert_close(cr, [0.1, -0.1])
    assert_close(rr, [-0.05, 0.1])


def test_rdpo_alpha_zero_equals_sigmoid():
    a, _, _ = dpo_loss(*batch(), beta=0.1, loss_type="rdpo", chosen_lengths=CHOSEN_LEN, rejected_lengths=REJECTED_LEN)
    b, _, _ = dpo_loss(*batch(), beta=0.1)
    torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14)


def test_rdpo_gives_longer_chosen_less_push():
    # Example 0 has a chosen answer 20 tokens longer than the rejected one: R-DPO attributes part
    # of the preference to length, so the loss and the gradient pulling the policy towards the
    # (long) chosen answer are both smaller than plain DPO's.
    kw = dict(beta=0.1, chosen_lengths=[30.0], rejected_lengths=[10.0])
    g_rdpo, _ = policy_grads(PC[0], PR[0], RC[0], RR[0], loss_type="rdpo", alpha=0.05, **kw)
    g_dpo, _ = policy_grads(PC[0], PR[0], RC[0], RR[0], loss_type="sigmoid", beta=0.1)
    assert g_rdpo < 0 and g_dpo < 0
    assert abs(g_rdpo) < abs(g_dpo)
    # hand values: dL/dpc = -beta * sigmoid(-logit)
    assert g_rdpo == pytest.approx(-0.1 * sig(-1.15), abs=1e-12)
    assert g_dpo == pytest.approx(-0.1 * sig(-0.15), abs=1e-12)


def test_simpo_values_reference_free():
    # ex0: -10/20 - (-12/8) = -0.5 + 1.5 = 1.0; ex1: -20/10 - (-15/20) = -2 + 0.75 = -1.25
    # beta = 2, gamma = 0.5 -> logits 1.5 and -3.0
    pc, pr, _, _ = batch()
    losses, cr, rr = dpo_loss(
        pc, pr, None, None, beta=2.0, gamma=0.5, loss_type="simpo", chosen_lengths=[20, 10], rejected_lengths=[8, 20]
    )
    assert_close(losses, [-logsig(1.5), -logsig(-3.0)])
    assert_close(cr, [2.0 * -0.5, 2.0 * -2.0])
    assert_close(rr, [2.0 * -1.5, 2.0 * -0.75])


def test_simpo_ignores_reference():
    kw = dict(beta=2.0, gamma=0.5, loss_type="simpo", chosen_lengths=[20, 10], rejected_lengths=[8, 20])
    pc, pr, rc, rr = batch()
    a, _, _ = dpo_loss(pc, pr, rc, rr, **kw)
    b, _, _ = dpo_loss(pc, pr, None, None, **kw)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_hinge_values():
    losses, _, _ = dpo_loss(*batch(), beta=0.1, loss_type="hinge")
    assert_close(losses, [1.0 - 0.15, 1.0 + 0.2])
    # past the margin (beta*h = 1.5 >= 1) the loss and its gradient are exactly 0
    gc, gr = policy_grads(PC[0], PR[0], RC[0], RR[0], loss_type="hinge", beta=1.0)
    assert (gc, gr) == (0.0, 0.0)


# ----------------------------------------------------------------------------- gradients

GRADIENT_CASES = {
    "sigmoid": dict(loss_type="sigmoid", beta=0.1),
    "cdpo": dict(loss_type="cdpo", beta=0.1, label_smoothing=0.05),
    "robust": dict(loss_type="robust", beta=0.1, label_smoothing=0.2),
    "ipo_below_target": dict(loss_type="ipo", beta=0.1),  # target 5, margins 1.5 and -2
    "rdpo": dict(loss_type="rdpo", beta=0.1, alpha=0.05, chosen_lengths=[30.0], rejected_lengths=[10.0]),
    "simpo": dict(loss_type="simpo", beta=2.0, gamma=0.5, chosen_lengths=[20.0], rejected_lengths=[8.0]),
    "hinge_inside_margin": dict(loss_type="hinge", beta=0.1),
}


@pytest.mark.parametrize("case", list(GRADIENT_CASES))
@pytest.mark.parametrize("example", [0, 1])
def test_gradient_raises_chosen_lowers_rejected(case, example):
    kwargs = dict(GRADIENT_CASES[case])
    gc, gr = policy_grads(PC[example], PR[example], RC[example], RR[example], **kwargs)
    assert gc < 0, "descent must increase the chosen log-prob"
    assert gr > 0, "descent must decrease the rejected log-prob"


def test_sigmoid_gradient_hand_value():
    # dL/dpc = -beta * sigmoid(-z), dL/dpr = +beta * sigmoid(-z), z = 0.15
    gc, gr = policy_grads(PC[0], PR[0], RC[0], RR[0], beta=0.1)
    assert gc == pytest.approx(-0.1 * sig(-0.15), abs=1e-12)
    assert gr == pytest.approx(0.1 * sig(-0.15), abs=1e-12)


def test_ipo_gradient_reverses_above_target():
    # beta = 1 -> target 0.5; h = 1.5 overshoots it, so IPO pulls the margin back down
    gc, gr = policy_grads(PC[0], PR[0], RC[0], RR[0], loss_type="ipo", beta=1.0)
    assert gc == pytest.approx(2 * (1.5 - 0.5), abs=1e-12)
    assert gr == pytest.approx(-2 * (1.5 - 0.5), abs=1e-12)
    # and is flat exactly at the target: pc - rc = 0.5, pr = rr
    gc, gr = policy_grads(-1.5, -3.0, -2.0, -3.0, loss_type="ipo", beta=1.0)
    assert gc == pytest.approx(0.0, abs=1e-12) and gr == pytest.approx(0.0, abs=1e-12)


def test_ipo_length_averaged_gradient_scales_with_length():
    # d/dpc (h - t)^2 with h = (pc - rc)/|y_w| - ... is 2 (h - t) / |y_w|
    kw = dict(loss_type="ipo", beta=0.5, chosen_lengths=[10.0], rejected_lengths=[5.0])
    gc, gr = policy_grads(PC[0], PR[0], RC[0], RR[0], **kw)
    assert gc == pytest.approx(2 * (0.2 - 1.0) / 10, abs=1e-12)
    assert gr == pytest.approx(-2 * (0.2 - 1.0) / 5, abs=1e-12)


def test_soft_label_half_strength_zero_gradient_at_zero_margin():
    # policy == reference -> margin 0; with s = 0.5 there is nothing to learn
    gc, gr = policy_grads(-5.0, -7.0, -5.0, -7.0, beta=0.1, strength=[0.5])
    assert gc == pytest.approx(0.0, abs=1e-15) and gr == pytest.approx(0.0, abs=1e-15)
    # while hard labels do push at margin 0: dL/dpc = -beta * sigmoid(0) = -0.05
    gc, _ = policy_grads(-5.0, -7.0, -5.0, -7.0, beta=0.1)
    assert gc == pytest.approx(-0.05, abs=1e-15)


def test_soft_label_optimum_is_logit_of_strength():
    # loss -(s logsig(z) + (1-s) logsig(-z)) is minimised at z = log(s/(1-s)), with value H(s)
    s, beta = 0.8, 0.5
    h = math.log(s / (1 - s)) / beta  # = 2 log 4
    gc, gr = policy_grads(h, 0.0, 0.0, 0.0, beta=beta, strength=[s])
    assert gc == pytest.approx(0.0, abs=1e-12) and gr == pytest.approx(0.0, abs=1e-12)
    losses, _, _ = dpo_loss(t([h]), t([0.0]), t([0.0]), t([0.0]), beta=beta, strength=[s])
    entropy = -(s * math.log(s) + (1 - s) * math.log(1 - s))
    assert losses.item() == pytest.approx(entropy, abs=1e-12)
    # past the optimum the soft label pushes the margin back (unlike hard-label DPO)
    gc, _ = policy_grads(h + 1.0, 0.0, 0.0, 0.0, beta=beta, strength=[s])
    assert gc > 0


def test_cdpo_is_conservative():
    # cDPO's gradient vanishes at z* = log((1-eps)/eps) instead of pushing the margin forever
    eps, beta = 0.1, 0.5
    h = math.log(0.9 / 0.1) / beta
    gc, _ = policy_grads(h, 0.0, 0.0, 0.0, loss_type="cdpo", beta=beta, label_smoothing=eps)
    assert gc == pytest.approx(0.0, abs=1e-12)
    gc, _ = policy_grads(h + 1.0, 0.0, 0.0, 0.0, loss_type="cdpo", beta=beta, label_smoothing=eps)
    assert gc > 0


def test_robust_gradient_never_reverses():
    # robust DPO keeps pushing even at a large margin: dL/dz = -((1-e) sig(-z) + e sig(z)) / (1-2e)
    eps, beta, h = 0.2, 0.5, 20.0
    gc, gr = policy_grads(h, 0.0, 0.0, 0.0, loss_type="robust", beta=beta, label_smoothing=eps)
    z = beta * h
    assert gc == pytest.approx(-beta * (0.8 * sig(-z) + 0.2 * sig(z)) / 0.6, rel=1e-10)
    assert gc < 0 and gr > 0


def test_simpo_gradient_hand_value():
    # dL/dpc = -(beta/|y_w|) * sigmoid(-logit); logit = 1.5 (see test_simpo_values_reference_free)
    gc, gr = policy_grads(
        PC[0], PR[0], None, None, loss_type="simpo", beta=2.0, gamma=0.5, chosen_lengths=[20], rejected_lengths=[8]
    )
    assert gc == pytest.approx(-(2.0 / 20) * sig(-1.5), abs=1e-12)
    assert gr == pytest.approx((2.0 / 8) * sig(-1.5), abs=1e-12)


# ----------------------------------------------------------------------------- soft labels per loss


def test_ipo_soft_label_scales_the_target():
    # target (2s - 1) / (2 beta), beta = 0.1: s = 0.8 -> 0.6 / 0.2 = 3.0; s = 0.5 -> 0
    losses, _, _ = dpo_loss(*batch(), beta=0.1, loss_type="ipo", strength=[0.8, 0.5])
    assert_close(losses, [(1.5 - 3.0) ** 2, (-2.0 - 0.0) ** 2])  # 2.25, 4.0


def test_ipo_strength_zero_mirrors_strength_one():
    # s = 0 -> target -5: (1.5 + 5)^2 = 42.25; s = 1 is the hard loss (-2 - 5)^2 = 49
    losses, _, _ = dpo_loss(*batch(), beta=0.1, loss_type="ipo", strength=[0.0, 1.0])
    assert_close(losses, [42.25, 49.0])
    pc, pr, rc, rr = batch()
    swapped, _, _ = dpo_loss(pr, pc, rr, rc, beta=0.1, loss_type="ipo")  # (-1.5 - 5)^2 = 42.25
    assert swapped[0].item() == pytest.approx(42.25, abs=1e-12)


def test_ipo_length_averaged_soft_label():
    # h = 0.2 (see test_ipo_length_averaged_values), beta = 0.5, s = 0.75 -> target 0.5 / 1.0 = 0.5
    losses, _, _ = dpo_loss(*batch(), beta=0.5, loss_type="ipo", chosen_lengths=[10, 4], rejected_lengths=[5, 2],
                            strength=[0.75, 0.75])
    assert_close(losses, [(0.2 - 0.5) ** 2, (-0.75 - 0.5) ** 2])  # 0.09, 1.5625


def test_robust_soft_label_is_the_expected_loss_over_the_label():
    # s*l(z) + (1-s)*l(-z) with l(z) = ((1-e)(-logsig z) - e(-logsig(-z))) / (1-2e), e = 0.2:
    #   coefficient of -logsig(z) = (s - e)/(1 - 2e), of -logsig(-z) = (1 - s - e)/(1 - 2e)
    #   ex0, s = 0.8: 0.6/0.6 = 1 and 0/0.6 = 0 -> -logsig(0.15): the flip noise is taken back out
    #   ex1, s = 0.5: 0.3/0.6 = 0.5 each -> 0.5 (-logsig(-0.2)) + 0.5 (-logsig(0.2))
    losses, _, _ = dpo_loss(*batch(), beta=0.1, loss_type="robust", label_smoothing=0.2, strength=[0.8, 0.5])
    assert_close(losses, [-logsig(0.15), 0.5 * -logsig(-0.2) + 0.5 * -logsig(0.2)])


def test_robust_soft_label_without_noise_is_soft_sigmoid():
    a, _, _ = dpo_loss(*batch(), beta=0.1, loss_type="robust", strength=[0.8, 0.3])
    # -(0.8 logsig(0.15) + 0.2 logsig(-0.15)), -(0.3 logsig(-0.2) + 0.7 logsig(0.2))
    assert_close(a, [-(0.8 * logsig(0.15) + 0.2 * logsig(-0.15)), -(0.3 * logsig(-0.2) + 0.7 * logsig(0.2))])


def test_rdpo_soft_label_is_cross_entropy_on_the_length_corrected_logit():
    # logits 1.15 and -0.7 (test_rdpo_values); s = 0.8 and 0.5
    losses, _, _ = dpo_loss(*batch(), beta=0.1, loss_type="rdpo", alpha=0.05, chosen_lengths=CHOSEN_LEN,
                            rejected_lengths=REJECTED_LEN, strength=[0.8, 0.5])
    assert_close(losses, [-(0.8 * logsig(1.15) + 0.2 * logsig(-1.15)), -(0.5 * logsig(-0.7) + 0.5 * logsig(0.7))])


def test_soft_label_loss_types():
    assert SOFT_LABEL_LOSS_TYPES == ("sigmoid", "cdpo", "robust", "ipo", "rdpo")


TIE_CASES = {
    "sigmoid": dict(loss_type="sigmoid"),
    "cdpo": dict(loss_type="cdpo", label_smoothing=0.1),
    "robust": dict(loss_type="robust", label_smoothing=0.2),
    "ipo": dict(loss_type="ipo"),
    "ipo_lengths": dict(loss_type="ipo", chosen_lengths=[7.0], rejected_lengths=[3.0]),
    "rdpo": dict(loss_type="rdpo", alpha=0.05, chosen_lengths=[5.0], rejected_lengths=[5.0]),
}


@pytest.mark.parametrize("case", list(TIE_CASES))
def test_a_tie_is_not_a_preference_at_zero_margin(case):
    # policy == reference -> h = 0: a tie (s = 0.5) has nothing to learn, a hard label does
    kwargs = dict(TIE_CASES[case], beta=0.1)
    assert kwargs["loss_type"] in SOFT_LABEL_LOSS_TYPES
    gc, gr = policy_grads(-5.0, -7.0, -5.0, -7.0, strength=[0.5], **kwargs)
    assert gc == pytest.approx(0.0, abs=1e-15) and gr == pytest.approx(0.0, abs=1e-15)
    gc, _ = policy_grads(-5.0, -7.0, -5.0, -7.0, **kwargs)
    assert gc < 0


@pytest.mark.parametrize("loss_type", ["simpo", "hinge"])
def test_soft_labels_refused_where_no_formulation_exists(loss_type):
    pc, pr, rc, rr = batch()
    with pytest.raises(ValueError, match=rf"strength \(soft labels\) has no '{loss_type}' form.*sigmoid.*hard labels"):
        dpo_loss(pc, pr, rc, rr, beta=0.1, loss_type=loss_type, strength=[0.5, 1.0], chosen_lengths=CHOSEN_LEN,
                 rejected_lengths=REJECTED_LEN)


# ----------------------------------------------------------------------------- accuracy


def test_implicit_reward_accuracy_constructed_batch():
    chosen = torch.tensor([1.0, 2.0, 3.0, 4.0, -1.0])
    rejected = torch.tensor([0.0, 2.0, 5.0, 1.0, -3.0])  # wins, tie, loss, win, win
    assert implicit_reward_accuracy(chosen, rejected) == pytest.approx(3 / 5)
    assert isinstance(implicit_reward_accuracy(chosen, rejected), float)


def test_implicit_reward_accuracy_from_dpo_loss():
    _, cr, rr = dpo_loss(*batch(), beta=0.1)  # margins +1.5 and -2.0
    assert implicit_reward_accuracy(cr, rr) == 0.5
    # policy == reference: all rewards 0, ties are not counted as correct
    pc, pr, _, _ = batch()
    _, cr, rr = dpo_loss(pc, pr, pc.detach().clone(), pr.detach().clone(), beta=0.1)
    assert implicit_reward_accuracy(cr, rr) == 0.0


def test_implicit_reward_accuracy_errors():
    with pytest.raises(ValueError, match="shape"):
        implicit_reward_accuracy(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="empty"):
        implicit_reward_accuracy(torch.zeros(0), torch.zeros(0))


# ----------------------------------------------------------------------------- validation


def test_unknown_loss_type():
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(*batch(), beta=0.1, loss_type="kto")


@pytest.mark.parametrize("loss_type", ["rdpo", "simpo"])
def test_missing_lengths_named(loss_type):
    with pytest.raises(ValueError, match="chosen_lengths"):
        dpo_loss(*batch(), beta=0.1, loss_type=loss_type, rejected_lengths=REJECTED_LEN)
    with pytest.raises(ValueError, match="rejected_lengths"):
        dpo_loss(*batch(), beta=0.1, loss_type=loss_type, chosen_lengths=CHOSEN_LEN)


def test_ipo_needs_both_lengths_or_neither():
    with pytest.raises(ValueError, match="rejected_lengths"):
        dpo_loss(*batch(), beta=0.1, loss_type="ipo", chosen_lengths=CHOSEN_LEN)
    with pytest.raises(ValueError, match="chosen_lengths"):
        dpo_loss(*batch(), beta=0.1, loss_type="ipo", rejected_lengths=REJECTED_LEN)


def test_nonpositive_lengths_rejected():
    with pytest.raises(ValueError, match="rejected_lengths"):
        dpo_loss(*batch(), beta=0.1, loss_type="simpo", chosen_lengths=[3, 4], rejected_lengths=[0, 4])


def test_missing_reference_named():
    pc, pr, _, rr = batch()
    with pytest.raises(ValueError, match="reference_chosen_logps"):
        dpo_loss(pc, pr, None, rr, beta=0.1)


def test_shape_mismatch_named():
    pc, pr, rc, rr = batch()
    with pytest.raises(ValueError, match="reference_rejected_logps"):
        dpo_loss(pc, pr, rc, rr[:1], beta=0.1)


@pytest.mark.parametrize("loss_type", ["robust", "cdpo", "sigmoid"])
def test_label_smoothing_range(loss_type):
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(*batch(), beta=0.1, loss_type=loss_type, label_smoothing=0.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(*batch(), beta=0.1, loss_type=loss_type, label_smoothing=-0.1)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(loss_type="ipo", label_smoothing=0.1), "label_smoothing"),
        (dict(loss_type="hinge", label_smoothing=0.1), "label_smoothing"),
        (dict(loss_type="sigmoid", alpha=0.1), "alpha"),
        (dict(loss_type="sigmoid", gamma=0.1), "gamma"),
        (dict(loss_type="hinge", strength=[0.5, 0.5]), "strength"),
        (dict(loss_type="simpo", strength=[0.5, 0.5], chosen_lengths=CHOSEN_LEN, rejected_lengths=REJECTED_LEN),
         "strength"),
    ],
)
def test_unused_hyperparameters_rejected(kwargs, name):
    with pytest.raises(ValueError, match=name):
        dpo_loss(*batch(), beta=0.1, **kwargs)


def test_strength_out_of_range():
    with pytest.raises(ValueError, match="strength"):
        dpo_loss(*batch(), beta=0.1, strength=[1.2, 0.5])


@pytest.mark.parametrize("beta", [0.0, -1.0, float("inf")])
def test_beta_must_be_positive(beta):
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(*batch(), beta=beta)


# ----------------------------------------------------------------------------- dtypes


def test_low_precision_inputs_are_upcast():
    pc, pr, rc, rr = (x.to(torch.bfloat16) for x in batch())
    losses, cr, rr_ = dpo_loss(pc, pr, rc, rr, beta=0.1)
    assert losses.dtype == cr.dtype == rr_.dtype == torch.float32
    assert losses[0].item() == pytest.approx(math.log(1 + math.exp(-0.15)), abs=1e-6)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_every_loss_type_runs_and_backprops(loss_type):
    pc, pr, rc, rr = batch(requires_grad=True)
    losses, cr, rr_ = dpo_loss(
        pc, pr, rc, rr, beta=0.1, loss_type=loss_type, chosen_lengths=CHOSEN_LEN, rejected_lengths=REJECTED_LEN
    )
    assert losses.shape == cr.shape == rr_.shape == (2,)
    assert torch.isfinite(losses).all()
    losses.mean().backward()
    assert pc.grad is not None and torch.isfinite(pc.grad).all()
