"""How ``preference_model=composite`` turns several members' scores into one reward.

Pure functions on float tensors of shape [N] (one score per response), plus ``Normaliser``,
the one piece with state (running statistics). Three combiners:

* ``weighted``: ``sum_m w_m * z_m`` where ``z_m`` is member m's score standardised (see
  ``Normaliser``; by default with running statistics over every batch the composite scored in
  this stage, so a batch of one or a batch of similar answers is not blown up).
* ``llama2``: Llama 2's piecewise rule (Touvron et al. 2023, section 3.2.2):
  ``R_c = R_s if is_safety(prompt) or R_s < 0.15 else R_h``, then ``WHITEN(LOGIT(R_c))``.
* ``constrained``: Safe-RLHF's Lagrangian (Dai et al. 2024): ``(r - lambda * c) / (1 + lambda)``
  with ``lambda <- max(0, lambda + lr * (mean cost - budget))`` after each scored batch.
"""

from __future__ import annotations

from typing import Mapping

import torch

from alignkit.core.running_moments import RunningMoments

NORMALISERS = ("running", "batch", "none")
MEMBER_SCALES = ("logit", "probability")
PROBABILITY_EPS = 1e-6  # probabilities are clamped to [eps, 1 - eps] before the logit


class Normaliser:
    """Standardises scores: ``(x - mean) / std``, or only ``x - mean`` when std is (near) 0.

    ``running``: mean and (population) std over every score seen so far, this batch included
    (Chan et al.'s parallel update, as PPO's ``reward_normalize``); ``batch``: over this batch
    alone; ``none``: unchanged. This is what "whiten" means for the llama2 combiner.
    """

    def __init__(self, mode: str = "running") -> None:
        if mode not in NORMALISERS:
            raise ValueError(f"normalise must be one of {', '.join(NORMALISERS)}, not {mode!r}")
        self.mode = mode
        self.moments = RunningMoments()

    def update(self, x: torch.Tensor) -> None:
        self.moments.update(x)

    @property
    def mean(self) -> float:
        return self.moments.mean

    @property
    def count(self) -> float:
        return self.moments.count

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.mode == "none" or x.numel() == 0:
            return x
        if self.mode == "batch":
            mean, std = float(x.double().mean()), float(x.double().std(unbiased=False))
        else:
            self.update(x)
            mean, std = self.moments.mean, self.moments.std
        centred = x - mean
        return centred / std if std > 1e-8 else centred


def weighted(standardised: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """``sum_m weights[m] * standardised[m]`` (a member without a weight counts 1.0)."""
    names = list(standardised)
    if not names:
        raise ValueError("weighted: no member scores")
    total = torch.zeros_like(standardised[names[0]], dtype=torch.float32)
    for name in names:
        total = total + float(weights.get(name, 1.0)) * standardised[name].float()
    return total


def logit(p: torch.Tensor, eps: float = PROBABILITY_EPS) -> torch.Tensor:
    """``log(p / (1 - p))`` with p clamped to ``[eps, 1 - eps]`` (a rule's 0 or 1 stays finite)."""
    p = p.double().clamp(eps, 1.0 - eps)
    return torch.log(p / (1.0 - p)).float()


def as_probability(scores: torch.Tensor, scale: str) -> torch.Tensor:
    """A member's scores on the reward model's sigmoid scale: ``sigmoid(score)`` for Bradley-Terry
    logits (``scale=logit``, what ``bradley_terry`` returns), the score itself for ``probability``."""
    if scale not in MEMBER_SCALES:
        raise ValueError(f"member_scale must be one of {', '.join(MEMBER_SCALES)}, not {scale!r}")
    return torch.sigmoid(scores.double()).float() if scale == "logit" else scores.float()


def llama2_select(helpful: torch.Tensor, safe: torch.Tensor, is_safety: torch.Tensor, threshold: float = 0.15,
                  scale: str = "logit") -> tuple[torch.Tensor, torch.Tensor]:
    """``LOGIT(R_c)`` of Llama 2 eq. (section 3.2.2), before whitening, and which rows used R_s.

    ``R_c = R_s if is_safety or R_s < threshold else R_h`` compares probabilities (``R_s`` on the
    sigmoid scale, see ``as_probability``). For logits the logit of the sigmoid is the score itself,
    taken as is (no clamping); probabilities go through ``logit``.
    """
    p_safe = as_probability(safe, scale)
    use_safety = is_safety.bool().reshape(-1) | (p_safe < threshold)
    if scale == "logit":
        chosen = torch.where(use_safety, safe.float(), helpful.float())
    else:
        chosen = logit(torch.where(use_safety, p_safe, as_probability(helpful, scale)))
    return chosen, use_safety


def constrained(reward: torch.Tensor, cost: torch.Tensor, multiplier: float) -> torch.Tensor:
    """Safe-RLHF's per-sample objective ``(r - lambda * c) / (1 + lambda)``; the division (as in
    their actor loss) keeps its scale from growing with lambda."""
    if multiplier < 0:
        raise ValueError(f"the Lagrange multiplier must be >= 0, not {multiplier}")
    return (reward.float() - multiplier * cost.float()) / (1.0 + multiplier)


def update_multiplier(multiplier: float, mean_cost: float, budget: float, lr: float) -> float:
    """One projected gradient-ascent step on lambda: ``max(0, lambda + lr * (mean cost - budget))``.

    Rises while the expected cost is over the budget, falls (to 0 at least) while it is under.
    Safe-RLHF steps ``log lambda`` with Adam instead; the plain step keeps lambda able to reach 0.
    """
    return max(0.0, multiplier + lr * (mean_cost - budget))
