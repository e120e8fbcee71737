"""The ``median_baseline`` advantage estimator: each response's score minus the median score of
its prompt's responses. A median, unlike GRPO's mean, is not dragged by one outlier (a reward
hack, a parse failure), so the other responses keep their sign."""

import torch

from alignkit.core import AdvantageEstimatorEntry, hookimpl
from alignkit.core.rl import AdvantageInputs, AdvantageOutputs

alignkit_requires = ">=1.1,<2"  # 1.1 added alignkit_advantage_estimators


def median_baseline(inputs: AdvantageInputs) -> AdvantageOutputs:
    """[B] scores (minus their KL penalty) in groups of ``group_size`` -> [B, T] advantages.
    For an even group the median is the lower of the two middle scores (``torch.median``)."""
    mask = inputs.mask.to(inputs.kl_penalty.dtype)
    scores = inputs.scores.detach() - (inputs.kl_penalty.detach() * mask).sum(dim=1)
    groups = scores.view(-1, inputs.group_size)
    advantages = groups - groups.median(dim=1, keepdim=True).values
    return AdvantageOutputs(advantages=advantages.reshape(-1, 1) * mask)  # each response token, 0 elsewhere


@hookimpl
def alignkit_advantage_estimators():
    yield AdvantageEstimatorEntry(name="median_baseline", estimate=median_baseline,
                                  description="The score minus the median score of the prompt's responses.")
