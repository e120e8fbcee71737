"""The ``cpo`` optimizer: DPO's preference loss without the reference model, plus NLL on the chosen response."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from alignkit.core.pipeline import StageContext
from alignkit.core.types import StageResult
from alignkit.plugins.reference_free.losses import cpo_loss
from alignkit.plugins.reference_free.task import HeldOutOptions, ObjectiveResult, PairLogps, check_options, train_on_pairs


@dataclass
class CPOConfig(HeldOutOptions):
    """Options of ``optimizer=cpo`` (training defaults come from ``trainer.*``); names as TRL's ``CPOConfig``."""

    beta: float = 0.1
    loss_type: str = "sigmoid"  # sigmoid | hinge | ipo | simpo
    cpo_alpha: float = 1.0  # weight of the NLL term on the chosen response
    label_smoothing: float = 0.0  # sigmoid only: label-flip rate
    simpo_gamma: float = 0.5  # simpo only: target reward margin


def cpo_objective(options: CPOConfig, logps: PairLogps) -> ObjectiveResult:
    """CPO on summed log-probs (``ipo``/``simpo``: the loss averages them per token)."""
    losses, chosen_rewards, rejected_rewards = cpo_loss(
        logps.chosen, logps.rejected, logps.chosen_nll, beta=options.beta, cpo_alpha=options.cpo_alpha,
        loss_type=options.loss_type, label_smoothing=options.label_smoothing, simpo_gamma=options.simpo_gamma,
        chosen_lengths=logps.chosen_lengths, rejected_lengths=logps.rejected_lengths)
    return losses, chosen_rewards, rejected_rewards, {}


class CPOOptimizer:
    """``optimizer=cpo``: CPO (Xu et al. 2024) and its hinge, IPO and SimPO forms, no reference model."""

    def __init__(self, options: CPOConfig, ctx: Any = None) -> None:
        self.options = check_options(options, "cpo", cpo_objective)

    def run(self, ctx: StageContext) -> StageResult:
        return train_on_pairs(ctx, "cpo", partial(cpo_objective, self.options), self.options)
