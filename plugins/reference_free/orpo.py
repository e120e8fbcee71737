"""The ``orpo`` optimizer: NLL on the chosen response plus an odds-ratio preference term."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch.nn.functional as F

from alignkit.core.pipeline import StageContext
from alignkit.core.types import StageResult
from alignkit.plugins.reference_free.losses import orpo_loss
from alignkit.plugins.reference_free.task import HeldOutOptions, ObjectiveResult, PairLogps, check_options, train_on_pairs


@dataclass
class ORPOConfig(HeldOutOptions):
    """Options of ``optimizer=orpo`` (training defaults come from ``trainer.*``)."""

    beta: float = 0.1  # weight of the odds-ratio term (the paper's lambda)


def orpo_objective(options: ORPOConfig, logps: PairLogps) -> ObjectiveResult:
    """ORPO on length-normalised log-probs, as the paper and TRL's ORPOTrainer."""
    losses, chosen_rewards, rejected_rewards, log_odds = orpo_loss(
        logps.chosen_mean, logps.rejected_mean, logps.chosen_nll, options.beta)
    return losses, chosen_rewards, rejected_rewards, {
        "log_odds_ratio": float(log_odds.mean()),  # log(odds(chosen) / odds(rejected)), mean over pairs
        "odds_ratio_term": float(-F.logsigmoid(log_odds).mean()),  # what beta multiplies
    }


class ORPOOptimizer:
    """``optimizer=orpo``: ORPO (Hong et al. 2024), fine-tuning and preference in one loss, no reference model."""

    def __init__(self, options: ORPOConfig, ctx: Any = None) -> None:
        self.options = check_options(options, "orpo", orpo_objective)

    def run(self, ctx: StageContext) -> StageResult:
        return train_on_pairs(ctx, "orpo", partial(orpo_objective, self.options), self.options)
