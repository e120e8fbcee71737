"""The KL to the frozen reference: the sampled per-token KL and the coefficient's controllers
(the k1/k2/k3 estimates are the policy losses', ``policy_losses.kl_estimate``).

The loop subtracts ``kl_coef * estimate`` from the reward (``optimizer.kl_penalty=reward``,
PPO's and RLOO's way) or hands the coefficient to the policy loss (``kl_penalty=loss``, GRPO's
way). The controllers' state is checkpointed with the run.
"""

from __future__ import annotations

from typing import Any

import torch


def per_token_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The sampled estimate log pi(y_t) - log pi_ref(y_t) of KL(policy || reference), per token.

    Its sum over a response is an unbiased estimate of the sequence KL under the policy's
    samples, which is what the penalty in the reward needs (Ziegler et al. 2019).
    """
    return (logprobs - ref_logprobs) * mask.to(logprobs.dtype)


class FixedKLController:
    """A constant KL coefficient (beta)."""

    def __init__(self, kl_coef: float) -> None:
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """Ziegler et al. 2019: steer the observed KL towards ``target``.

    ``e = clip(KL / target - 1, -0.2, 0.2)`` and ``beta <- beta * (1 + e * n_steps / horizon)``,
    where ``n_steps`` is how many samples the KL was measured on: a KL above target raises
    beta, below lowers it, by at most 20% of ``n_steps / horizon`` per update.
    """

    def __init__(self, kl_coef: float, target: float, horizon: int) -> None:
        super().__init__(kl_coef)
        if target <= 0 or horizon <= 0:
            raise ValueError("AdaptiveKLController: target and horizon must be positive")
        self.target, self.horizon = float(target), int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon


def controller(kl_coef: float, adaptive: bool, target: float, horizon: int) -> FixedKLController:
    """The configured controller (``optimizer.adaptive_kl``)."""
    return AdaptiveKLController(kl_coef, target, horizon) if adaptive else FixedKLController(kl_coef)
