"""Tests for alignkit.plugins.reference_free.losses (ORPO, CPO).

Expected values are worked out by hand in the comments and computed with ``math`` on concrete
floats, never by calling the same torch formula; then the same tensors go through TRL's
``ORPOTrainer.odds_ratio_loss`` / ``CPOTrainer.cpo_loss`` when TRL is installed.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from alignkit.plugins.reference_free.losses import CPO_LOSS_TYPES, cpo_loss, log_odds_ratio, orpo_loss


def t(values, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=requires_grad)


def assert_close(actual: torch.Tensor, expected: list[float], tol: float = 1e-12) -> None:
    assert actual.shape == (len(expected),)
    for a, e in zip(actual.tolist(), expected, strict=True):
        assert a == pytest.approx(e, abs=tol, rel=tol)


# ----------------------------------------------------------------------------- ORPO
# Mean per-token log-probs chosen so the odds are simple fractions (odds = p / (1 - p)):
#   example 0: p_w = 0.5  -> odds 1;    p_l = 0.2  -> odds 1/4;  log odds ratio = log(1 / (1/4)) = log 4
#              sigmoid(log 4) = 4 / (1 + 4) = 0.8
#   example 1: p_w = 0.25 -> odds 1/3;  p_l = 0.75 -> odds 3;    log odds ratio = log(1/9) = -log 9
#              sigmoid(-log 9) = 1 / (1 + 9) = 0.1
ORPO_W = [math.log(0.5), math.log(0.25)]
ORPO_L = [math.log(0.2), math.log(0.75)]


def test_orpo_log_odds_ratio_hand_values():
    assert_close(log_odds_ratio(t(ORPO_W), t(ORPO_L)), [math.log(4.0), -math.log(9.0)])


def test_orpo_values_and_rewards():
    # loss = nll - beta * log sigmoid(log odds): beta = 0.1, nll = 2.0
    #   example 0: 2.0 - 0.1 * log 0.8 = 2.0 + 0.022314... ; example 1: 2.0 - 0.1 * log 0.1 = 2.0 + 0.230258...
    losses, chosen_r, rejected_r, log_odds = orpo_loss(t(ORPO_W), t(ORPO_L), t(2.0), beta=0.1)
    assert_close(losses, [2.0 - 0.1 * math.log(0.8), 2.0 - 0.1 * math.log(0.1)])
    assert losses[0].item() == pytest.approx(2.0223144, abs=1e-7)
    # rewards are beta * the mean log-probs (TRL's logging convention), detached
    assert_close(chosen_r, [0.1 * math.log(0.5), 0.1 * math.log(0.25)])
    assert_close(rejected_r, [0.1 * math.log(0.2), 0.1 * math.log(0.75)])
    assert_close(log_odds, [math.log(4.0), -math.log(9.0)])
    assert not (chosen_r.requires_grad or rejected_r.requires_grad or log_odds.requires_grad)


def test_orpo_per_example_nll_is_added_to_each_example():
    losses, _, _, _ = orpo_loss(t(ORPO_W), t(ORPO_L), t([1.0, 3.0]), beta=0.5)
    assert_close(losses, [1.0 - 0.5 * math.log(0.8), 3.0 - 0.5 * math.log(0.1)])


def test_orpo_gradient_hand_values():
    # d log_odds / d lw = 1 + p_w / (1 - p_w) = 1 / (1 - p_w); d(-logsig z)/dz = -sigmoid(-z)
    # example 0, beta 0.1: dL/dlw = -0.1 * 0.2 / (1 - 0.5) = -0.04; dL/dll = +0.1 * 0.2 / (1 - 0.2) = 0.025
    lw, ll = t(ORPO_W[:1], True), t(ORPO_L[:1], True)
    losses, _, _, _ = orpo_loss(lw, ll, t(2.0), beta=0.1)
    losses.sum().backward()
    assert lw.grad.item() == pytest.approx(-0.04, abs=1e-12)
    assert ll.grad.item() == pytest.approx(0.025, abs=1e-12)


def test_orpo_nll_gradient_flows_through_the_nll_argument():
    nll = t(2.0, True)
    losses, _, _, _ = orpo_loss(t(ORPO_W), t(ORPO_L), nll, beta=0.1)
    losses.mean().backward()
    assert nll.grad.item() == pytest.approx(1.0, abs=1e-12)  # mean over the batch of (nll + ...)


def test_orpo_log1mexp_branches_agree_with_math_near_the_switch():
    # log(1 - exp(x)) computed two ways in the loss (x < -log 2 and x >= -log 2)
    for x in (-0.6931, -0.6932, -1e-6, -30.0):
        lw, ll = t([x]), t([math.log(0.5)])  # odds(0.5) = 1, so log odds ratio = x - log(1 - e^x)
        expected = x - math.log(-math.expm1(x))
        assert log_odds_ratio(lw, ll).item() == pytest.approx(expected, rel=1e-10)


def test_orpo_certain_response_stays_finite_and_positive_logps_are_errors():
    losses, _, _, log_odds = orpo_loss(t([0.0, -1.0]), t([-1.0, 0.0]), t(1.0), beta=0.1)
    assert torch.isfinite(losses).all() and torch.isfinite(log_odds).all()
    assert log_odds[0] > 0 > log_odds[1]
    with pytest.raises(ValueError, match="<= 0"):
        orpo_loss(t([0.1]), t([-1.0]), t(1.0), beta=0.1)


def test_orpo_errors_name_the_argument():
    with pytest.raises(ValueError, match="beta"):
        orpo_loss(t(ORPO_W), t(ORPO_L), t(1.0), beta=0.0)
    with pytest.raises(ValueError, match="rejected_logps_mean"):
        orpo_loss(t(ORPO_W), t(ORPO_L[:1]), t(1.0), beta=0.1)
    with pytest.raises(ValueError, match="chosen_nll"):
        orpo_loss(t(ORPO_W), t(ORPO_L), t([1.0, 2.0, 3.0]), beta=0.1)
    with pytest.raises(ValueError, match="chosen_logps_mean"):
        orpo_loss(torch.tensor([-1, -2]), t(ORPO_L), t(1.0), beta=0.1)


def test_orpo_low_precision_inputs_are_upcast():
    losses, _, _, _ = orpo_loss(t(ORPO_W).to(torch.bfloat16), t(ORPO_L).to(torch.bfloat16), 2.0, beta=0.1)
    assert losses.dtype == torch.float32
    assert losses[0].item() == pytest.approx(2.0 - 0.1 * math.log(0.8), abs=1e-2)  # bf16 inputs: 3 digits


# ----------------------------------------------------------------------------- CPO
# Summed log-probs: h = pc - pr = [-10 - (-12), -20 - (-15)] = [2, -5].
# beta = log 2 makes the logits beta * h = [2 log 2, -5 log 2] = [log 4, -log 32]:
#   -logsig(log 4)   = log(1 + 1/4) = log 1.25
#   -logsig(-log 32) = log(1 + 32)  = log 33
PC, PR = [-10.0, -20.0], [-12.0, -15.0]
LN2 = math.log(2.0)


def test_cpo_types_tuple():
    assert CPO_LOSS_TYPES == ("sigmoid", "hinge", "ipo", "simpo")


def test_cpo_sigmoid_values_rewards_and_nll_weight():
    # + cpo_alpha * nll = 0.5 * 2.0 = 1.0 on each example
    losses, chosen_r, rejected_r = cpo_loss(t(PC), t(PR), t(2.0), beta=LN2, cpo_alpha=0.5)
    assert_close(losses, [math.log(1.25) + 1.0, math.log(33.0) + 1.0])
    assert_close(chosen_r, [LN2 * -10.0, LN2 * -20.0])  # beta * summed log-probs
    assert_close(rejected_r, [LN2 * -12.0, LN2 * -15.0])


def test_cpo_alpha_zero_is_the_bare_preference_loss():
    losses, _, _ = cpo_loss(t(PC), t(PR), t(100.0), beta=LN2, cpo_alpha=0.0)
    assert_close(losses, [math.log(1.25), math.log(33.0)])


def test_cpo_sigmoid_label_smoothing():
    # eps = 0.1: 0.9 * -logsig(z) + 0.1 * -logsig(-z); example 0, z = log 4:
    #   logsig(log 4) = log 0.8, logsig(-log 4) = log 0.2 -> 0.9 * 0.223144 + 0.1 * 1.609438 = 0.361773
    losses, _, _ = cpo_loss(t(PC), t(PR), 0.0, beta=LN2, label_smoothing=0.1)
    assert losses[0].item() == pytest.approx(-0.9 * math.log(0.8) - 0.1 * math.log(0.2), abs=1e-12)
    assert losses[0].item() == pytest.approx(0.361773, abs=1e-6)


def test_cpo_sigmoid_and_hinge_ignore_lengths():
    # they work on summed log-probs: token counts change nothing (ipo would average with them)
    for loss_type in ("sigmoid", "hinge"):
        plain, _, _ = cpo_loss(t(PC), t(PR), 0.0, beta=0.1, loss_type=loss_type)
        given, _, _ = cpo_loss(t(PC), t(PR), 0.0, beta=0.1, loss_type=loss_type, chosen_lengths=[5, 10],
                               rejected_lengths=[4, 3])
        torch.testing.assert_close(plain, given, rtol=0, atol=0)


def test_cpo_hinge_values():
    # beta = 0.1: relu(1 - 0.2) = 0.8, relu(1 + 0.5) = 1.5; beta = 1: relu(1 - 2) = 0 for example 0
    losses, _, _ = cpo_loss(t(PC), t(PR), 0.0, beta=0.1, loss_type="hinge", cpo_alpha=0.0)
    assert_close(losses, [0.8, 1.5])
    losses, _, _ = cpo_loss(t(PC), t(PR), 0.0, beta=1.0, loss_type="hinge", cpo_alpha=0.0)
    assert losses[0].item() == 0.0


# Lengths for the per-token forms: chosen [5, 10], rejected [4, 3]
#   means: chosen -10/5 = -2, -20/10 = -2; rejected -12/4 = -3, -15/3 = -5  ->  h = [1, 3]
CL, RL = [5.0, 10.0], [4.0, 3.0]


def test_cpo_ipo_uses_mean_log_probs():
    # beta = 0.5 -> target 1 / (2 * 0.5) = 1: (1 - 1)^2 = 0, (3 - 1)^2 = 4; + 1.0 * nll 0.25
    losses, chosen_r, _ = cpo_loss(t(PC), t(PR), 0.25, beta=0.5, loss_type="ipo", chosen_lengths=CL,
                                   rejected_lengths=torch.tensor(RL))
    assert_close(losses, [0.25, 4.25])
    assert_close(chosen_r, [0.5 * -2.0, 0.5 * -2.0])  # rewards from the mean log-probs


def test_cpo_simpo_values():
    # beta = 2, gamma = 0.5: z = 2 * [1, 3] - 0.5 = [1.5, 5.5]; cpo_alpha = 0 is SimPO itself
    losses, _, _ = cpo_loss(t(PC), t(PR), 9.0, beta=2.0, loss_type="simpo", simpo_gamma=0.5, cpo_alpha=0.0,
                            chosen_lengths=CL, rejected_lengths=RL)
    assert_close(losses, [math.log(1 + math.exp(-1.5)), math.log(1 + math.exp(-5.5))])


def test_cpo_sigmoid_gradient_hand_value():
    # dL/dpc = -beta * sigmoid(-z) (+ nothing from the nll argument); z = log 4 -> sigmoid(-log 4) = 0.2
    pc, pr = t(PC[:1], True), t(PR[:1], True)
    cpo_loss(pc, pr, 1.0, beta=LN2)[0].sum().backward()
    assert pc.grad.item() == pytest.approx(-LN2 * 0.2, abs=1e-12)
    assert pr.grad.item() == pytest.approx(LN2 * 0.2, abs=1e-12)


@pytest.mark.parametrize("loss_type", ["ipo", "simpo"])
def test_cpo_length_normalised_types_need_both_lengths(loss_type):
    with pytest.raises(ValueError, match="chosen_lengths"):
        cpo_loss(t(PC), t(PR), 0.0, beta=0.1, loss_type=loss_type, rejected_lengths=RL)
    with pytest.raises(ValueError, match="rejected_lengths"):
        cpo_loss(t(PC), t(PR), 0.0, beta=0.1, loss_type=loss_type, chosen_lengths=CL)
    with pytest.raises(ValueError, match="positive"):
        cpo_loss(t(PC), t(PR), 0.0, beta=0.1, loss_type=loss_type, chosen_lengths=[0, 1], rejected_lengths=RL)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(loss_type="dpo"), "loss_type"),
        (dict(loss_type="hinge", label_smoothing=0.1), "label_smoothing"),
        (dict(label_smoothing=0.5), "label_smoothing"),
        (dict(loss_type="simpo", label_smoothing=0.1, chosen_lengths=CL, rejected_lengths=RL), "label_smoothing"),
        (dict(cpo_alpha=-1.0), "cpo_alpha"),
        (dict(beta=float("inf")), "beta"),
    ],
)
def test_cpo_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        cpo_loss(t(PC), t(PR), 0.0, **{"beta": 0.1, **kwargs})


# ----------------------------------------------------------------------------- TRL

def _trl_self(**attributes):
    """The attributes TRL's loss methods read from the trainer, without building a trainer."""
    return SimpleNamespace(accelerator=SimpleNamespace(device=torch.device("cpu")), **attributes)


def _random_logps(seed: int, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # mean log-probs on both sides of -log 2 (the two branches of log(1 - exp(x)))
    return -torch.rand(n, generator=g, dtype=torch.float64) * 3 - 0.01, \
        -torch.rand(n, generator=g, dtype=torch.float64) * 3 - 0.01


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_orpo_matches_trl_orpo_trainer(beta):
    trl_orpo = pytest.importorskip("trl.experimental.orpo.orpo_trainer")
    lw, ll = _random_logps(0)
    nll = torch.tensor(1.7, dtype=torch.float64)
    ours, chosen_r, rejected_r, log_odds = orpo_loss(lw, ll, nll, beta)
    theirs, trl_chosen, trl_rejected, _, trl_log_odds = trl_orpo.ORPOTrainer.odds_ratio_loss(
        _trl_self(beta=beta), lw, ll)
    trl_total = nll - theirs.mean()  # ORPOTrainer.get_batch_loss_metrics: policy_nll_loss - losses.mean()
    assert ours.mean().item() == pytest.approx(trl_total.item(), abs=1e-6)
    torch.testing.assert_close(chosen_r.float(), trl_chosen.float())
    torch.testing.assert_close(rejected_r.float(), trl_rejected.float())
    assert log_odds.mean().item() == pytest.approx(trl_log_odds.item(), abs=1e-6)


@pytest.mark.parametrize("loss_type, label_smoothing", [("sigmoid", 0.0), ("sigmoid", 0.1), ("hinge", 0.0),
                                                        ("ipo", 0.0), ("simpo", 0.0)])
def test_cpo_matches_trl_cpo_trainer(loss_type, label_smoothing):
    trl_cpo = pytest.importorskip("trl.experimental.cpo.cpo_trainer")
    g = torch.Generator().manual_seed(1)
    pc = -torch.rand(16, generator=g, dtype=torch.float64) * 40
    pr = -torch.rand(16, generator=g, dtype=torch.float64) * 40
    lc = torch.randint(1, 30, (16,), generator=g).double()
    lr = torch.randint(1, 30, (16,), generator=g).double()
    beta, cpo_alpha, gamma, nll = 0.2, 0.7, 0.4, torch.tensor(2.3, dtype=torch.float64)
    ours, chosen_r, rejected_r = cpo_loss(pc, pr, nll, beta=beta, cpo_alpha=cpo_alpha, loss_type=loss_type,
                                          label_smoothing=label_smoothing, simpo_gamma=gamma,
                                          chosen_lengths=lc, rejected_lengths=lr)
    # CPOTrainer.concatenated_forward averages the log-probs per token for ipo and simpo
    averaged = loss_type in ("ipo", "simpo")
    trl_pc, trl_pr = (pc / lc, pr / lr) if averaged else (pc, pr)
    trainer = _trl_self(alpha=0.0, loss_type=loss_type, beta=beta, simpo_gamma=gamma, label_smoothing=label_smoothing)
    theirs, trl_chosen, trl_rejected = trl_cpo.CPOTrainer.cpo_loss(trainer, trl_pc, trl_pr)
    trl_total = theirs.mean() + cpo_alpha * nll  # CPOTrainer.get_batch_loss_metrics
    assert ours.mean().item() == pytest.approx(trl_total.item(), abs=1e-9)
    torch.testing.assert_close(ours - cpo_alpha * nll, theirs)
    torch.testing.assert_close(chosen_r, trl_chosen)
    torch.testing.assert_close(rejected_r, trl_rejected)
