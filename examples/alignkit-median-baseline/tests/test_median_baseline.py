"""The estimator against values worked out by hand, and alignkit's contract suite for estimators."""

import torch

from alignkit.core.rl import AdvantageInputs
from alignkit.core.testing import AdvantageEstimatorContract
from alignkit_median_baseline.plugin import median_baseline


def test_the_median_of_each_group_is_the_baseline():
    # group 0: scores 1, 5, 2 -> median 2 -> advantages -1, 3, 0
    # group 1: scores 0.5, 0.5, 9.5 minus KL penalties 0, 0, 0.5 -> 0.5, 0.5, 9 -> median 0.5 -> 0, 0, 8.5
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    kl = torch.zeros(6, 2)
    kl[5, 0] = 0.5
    kl[5, 1] = 7.0  # off the mask: ignored
    out = median_baseline(AdvantageInputs(scores=torch.tensor([1.0, 5.0, 2.0, 0.5, 0.5, 9.5]), mask=mask,
                                          kl_penalty=kl, group_size=3))
    expected = torch.tensor([[-1.0, -1.0], [3.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [8.5, 0.0]])
    torch.testing.assert_close(out.advantages, expected)


class TestMedianBaselineContract(AdvantageEstimatorContract):
    name = "median_baseline"
