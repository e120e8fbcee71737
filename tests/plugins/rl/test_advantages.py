"""The built-in advantage estimators (plugins/rl/advantages.py) against hand-computed values,
and each of them through ``AdvantageEstimatorContract``."""

import pytest
import torch

from alignkit.core import AdvantageEstimatorEntry
from alignkit.core.rl import AdvantageInputs, AdvantageOutputs
from alignkit.core.testing import AdvantageEstimatorContract
from alignkit.plugins.rl import advantages as A


def close(actual, expected, atol=1e-5):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), atol=atol, rtol=0)


def inputs(scores, mask, kl_penalty=None, **kw):
    mask = torch.tensor(mask, dtype=torch.float32)
    kl = torch.zeros_like(mask) if kl_penalty is None else torch.tensor(kl_penalty, dtype=torch.float32)
    return AdvantageInputs(scores=torch.tensor(scores, dtype=torch.float32), mask=mask, kl_penalty=kl, **kw)


# -- gae -----------------------------------------------------------------------------------


def test_gae_by_hand():
    # rewards: t0 = -0.1, t1 = -0.2 + score 1.0 = 0.8 (the last response token), t2 off the mask
    # t1: delta = 0.8 + 1 * 0 - 0.25 = 0.55,  A1 = 0.55
    # t0: delta = -0.1 + 1 * 0.25 - 0.5 = -0.35, A0 = -0.35 + 1 * 0.5 * 0.55 = -0.075
    # returns = A + V: 0.425, 0.8, 0
    x = inputs([1.0], [[1, 1, 0]], [[0.1, 0.2, 9.0]], values=torch.tensor([[0.5, 0.25, 7.0]]),
               options={"gamma": 1.0, "lam": 0.5, "whiten_advantages": False})
    out = A.gae(x)
    close(out.advantages, [[-0.075, 0.55, 0.0]])
    close(out.returns, [[0.425, 0.8, 0.0]])


def test_gae_whitens_over_the_batch():
    # V = 0, lam = 1: A = return-to-go = row 0 [1, 1], row 1 [3, 3]; mean 2, deviations -1 -1 1 1,
    # unbiased var = 4 / 3, so each becomes -+1 / sqrt(4/3) = -+sqrt(3)/2 = -+0.8660254
    x = inputs([1.0, 3.0], [[1, 1], [1, 1]], values=torch.zeros(2, 2), options={"lam": 1.0})
    close(A.gae(x).advantages, [[-0.8660254, -0.8660254], [0.8660254, 0.8660254]])


def test_gae_needs_the_critic():
    with pytest.raises(ValueError, match="needs the critic's values"):
        A.gae(inputs([1.0], [[1]]))


# -- rloo ----------------------------------------------------------------------------------


def test_rloo_by_hand():
    # sequence scores = score - summed KL penalty: 1 - 0.5 = 0.5, 2, 6 (one group of 3)
    # baselines: (2 + 6) / 2 = 4, (0.5 + 6) / 2 = 3.25, (0.5 + 2) / 2 = 1.25
    # advantages: 0.5 - 4 = -3.5, 2 - 3.25 = -1.25, 6 - 1.25 = 4.75, on each response token
    x = inputs([1.0, 2.0, 6.0], [[1, 1], [1, 0], [1, 1]], [[0.25, 0.25], [0.0, 3.0], [0.0, 0.0]], group_size=3)
    close(A.rloo(x).advantages, [[-3.5, -3.5], [-1.25, 0.0], [4.75, 4.75]])


def test_rloo_normalised_over_the_batch():
    # -3.5, -1.25, 4.75 have mean 0 and unbiased var (12.25 + 1.5625 + 22.5625) / 2 = 18.1875,
    # std 4.2646805; each / (std + 1e-4): -0.8206753, -0.2930983, 1.1137736
    x = inputs([1.0, 2.0, 6.0], [[1, 1], [1, 0], [1, 1]], [[0.25, 0.25], [0.0, 3.0], [0.0, 0.0]], group_size=3,
               options={"normalize_advantages": True})
    close(A.rloo(x).advantages, [[-0.8206753, -0.8206753], [-0.2930983, 0.0], [1.1137736, 1.1137736]])


# -- grpo, dr_grpo -----------------------------------------------------------------------------


def test_grpo_by_hand():
    # group [1, 3]: mean 2, unbiased std sqrt(2) = 1.4142136, A = -+1 / (1.4142136 + 1e-4) = -+0.7070568
    # group [2, 2]: no spread, A = 0
    x = inputs([1.0, 3.0, 2.0, 2.0], [[1, 1], [1, 0], [1, 1], [1, 1]], group_size=2)
    close(A.grpo(x).advantages, [[-0.7070568, -0.7070568], [0.7070568, 0.0], [0, 0], [0, 0]])


def test_grpo_without_scaling_and_dr_grpo_only_shift_the_mean():
    # group [1, 3]: mean 2 -> -1, +1; group [2, 2] -> 0, 0
    expected = [[-1.0, -1.0], [1.0, 0.0], [0, 0], [0, 0]]
    x = inputs([1.0, 3.0, 2.0, 2.0], [[1, 1], [1, 0], [1, 1], [1, 1]], group_size=2)
    close(A.dr_grpo(x).advantages, expected)
    close(A.grpo(inputs([1.0, 3.0, 2.0, 2.0], [[1, 1], [1, 0], [1, 1], [1, 1]], group_size=2,
                        options={"scale_rewards": False})).advantages, expected)


def test_group_estimators_refuse_a_batch_that_is_not_whole_groups():
    with pytest.raises(ValueError, match="3 scores do not split into groups of 2"):
        A.grpo(inputs([1.0, 2.0, 3.0], [[1], [1], [1]], group_size=2))
    with pytest.raises(ValueError, match="at least 2 samples per prompt"):
        A.rloo(inputs([1.0], [[1]], group_size=1))


# -- reinforce_pp ------------------------------------------------------------------------------


def test_reinforce_pp_by_hand():
    # rewards row 0: -0.1, -0.1, -0.1 + 1 = 0.9; row 1: -0.2, -0.2 - 1 = -1.2 (t2 off the mask)
    # returns-to-go (gamma 1): row 0 0.7, 0.8, 0.9; row 1 -1.4, -1.2
    # over the 5 tokens: mean -0.04, unbiased var (0.74^2 + 0.84^2 + 0.94^2 + 1.36^2 + 1.16^2) / 4 = 1.333
    # whitened: (x + 0.04) / sqrt(1.333) = 0.6409389, 0.7275523, 0.8141657, -1.1779418, -1.0047151
    x = inputs([1.0, -1.0], [[1, 1, 1], [1, 1, 0]], [[0.1, 0.1, 0.1], [0.2, 0.2, 5.0]])
    out = A.reinforce_pp(x)
    close(out.advantages, [[0.6409389, 0.7275523, 0.8141657], [-1.1779418, -1.0047151, 0.0]])
    close(out.returns, [[0.7, 0.8, 0.9], [-1.4, -1.2, 0.0]])


def test_reinforce_pp_discounts_with_gamma():
    # gamma 0.5, rewards 0, 0, 1: returns 0.25, 0.5, 1
    x = inputs([1.0], [[1, 1, 1]], options={"gamma": 0.5})
    close(A.reinforce_pp(x).returns, [[0.25, 0.5, 1.0]])


# -- best_vs_worst -------------------------------------------------------------------------------


def test_best_vs_worst_marks_the_first_best_and_the_first_worst():
    # group 0: [0.2, 0.9, 0.9, 0.1]: best = row 1 (the first 0.9), worst = row 3
    # group 1: [0.5, 0.5, 0.5, 0.5]: a tie, skipped
    x = inputs([0.2, 0.9, 0.9, 0.1, 0.5, 0.5, 0.5, 0.5], [[1, 1]] * 3 + [[1, 0]] + [[1, 1]] * 4, group_size=4)
    out = A.best_vs_worst(x)
    close(out.advantages, [[0, 0], [1, 1], [0, 0], [-1, 0], [0, 0], [0, 0], [0, 0], [0, 0]])
    assert out.metrics == {"pairs": 1.0}


def test_best_vs_worst_keeps_a_tie_as_first_against_second():
    x = inputs([0.5, 0.5, 0.5], [[1], [1], [1]], group_size=3, options={"ties": "keep"})
    close(A.best_vs_worst(x).advantages, [[1.0], [-1.0], [0.0]])
    with pytest.raises(ValueError, match="ties must be one of skip, keep"):
        A.best_vs_worst(inputs([0.5, 0.5], [[1], [1]], group_size=2, options={"ties": "drop"}))


# -- every built-in keeps the contract ----------------------------------------------------------


class TestGAEContract(AdvantageEstimatorContract):
    name = "gae"


class TestRLOOContract(AdvantageEstimatorContract):
    name = "rloo"
    options = {"normalize_advantages": True}


class TestGRPOContract(AdvantageEstimatorContract):
    name = "grpo"


class TestDrGRPOContract(AdvantageEstimatorContract):
    name = "dr_grpo"


class TestReinforcePPContract(AdvantageEstimatorContract):
    name = "reinforce_pp"


class TestBestVsWorstContract(AdvantageEstimatorContract):
    name = "best_vs_worst"


# -- the contract catches what it promises to ------------------------------------------------------


def _batch_whitened_locally(x):
    """A broken estimator: whitens over its own rows (no reducer), reads the KL penalty off the
    mask and keeps the scores' gradient."""
    s = x.scores - x.kl_penalty.sum(dim=1)
    return AdvantageOutputs((((s - s.mean()) / s.std())[:, None] * torch.ones_like(x.mask)))


@pytest.mark.parametrize(("check", "message"), [
    ("test_two_processes_compute_what_one_does", "sum batch-wide statistics through inputs.reducer"),
    ("test_advantages_are_zero_off_the_mask", "advantages must be 0 where the mask is 0"),
    ("test_what_lies_off_the_mask_changes_nothing", "off the response mask changed the advantages"),
    ("test_no_gradient_flows_through_the_advantages", "advantages must be constants"),
])
def test_the_contract_fails_a_broken_estimator(check, message):
    entry = AdvantageEstimatorEntry("broken", estimate=_batch_whitened_locally, description="broken")
    inputs = AdvantageEstimatorContract.make_inputs(entry)
    args = {"part": entry, "outputs": (inputs, entry.estimate(inputs))}
    method = getattr(AdvantageEstimatorContract(), check)
    with pytest.raises(AssertionError, match=message):
        method(**{name: args[name] for name in method.__code__.co_varnames[1:method.__code__.co_argcount]})
