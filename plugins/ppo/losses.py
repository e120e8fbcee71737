"""PPO's math as pure functions on [batch, time] tensors (mask = 1 on response tokens).

Nothing here knows about models or tokenizers, so every formula is tested on hand-computed
values and against a plain-loop reference (tests/plugins/ppo/test_losses.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from alignkit.core.running_moments import RunningMoments  # noqa: F401  (reward_normalize; checkpointed)


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum()


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where ``mask`` is 1 (0 when there are none)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over masked positions; Bessel-corrected unless there is only one."""
    n = mask.sum()
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over masked positions; masked-out positions come back as 0.

    With ``shift_mean=False`` it only divides by the std (the sign of each value is kept).
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean if shift_mean else x) * torch.rsqrt(var + eps)
    return out * mask


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
                lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over response tokens.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``,
    where t+1 is the next *masked-in* position (so gaps and right padding are skipped) and the
    value after the last response token is 0 (the episode ends there).

    Args:
        rewards, values, mask: [batch, time]; mask is 1 on response tokens.
    Returns:
        (advantages, returns), both [batch, time], 0 where the mask is 0;
        returns = advantages + values (the critic's regression target).
    """
    if rewards.shape != values.shape or rewards.shape != mask.shape:
        raise ValueError(f"compute_gae: shapes differ: rewards {tuple(rewards.shape)}, "
                         f"values {tuple(values.shape)}, mask {tuple(mask.shape)}")
    rewards, values = rewards.detach(), values.detach()
    valid = mask.bool()
    mask = mask.to(values.dtype)
    advantages = torch.zeros_like(values)
    next_value = torch.zeros_like(values[:, 0])
    next_advantage = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        here = valid[:, t]
        advantages[:, t] = torch.where(here, advantage, torch.zeros_like(advantage))
        next_advantage = torch.where(here, advantage, next_advantage)
        next_value = torch.where(here, values[:, t], next_value)
    returns = (advantages + values) * mask
    return advantages, returns


@dataclass
class LossStats:
    """Diagnostics of one loss evaluation (plain floats, ready to log)."""

    clip_fraction: float
    approx_kl: float
    ratio_mean: float


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, cliprange: float = 0.2) -> tuple[torch.Tensor, LossStats]:
    """PPO's clipped surrogate (Schulman et al. 2017), averaged over response tokens.

    ``loss = mean(max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)))`` with
    ``ratio = exp(logprobs - old_logprobs)``. ``approx_kl`` is the k3 estimator
    ``mean((ratio - 1) - log ratio)`` of KL(old || new), always >= 0.
    """
    mask = mask.to(logprobs.dtype)
    log_ratio = (logprobs - old_logprobs.detach()) * mask
    ratio = torch.exp(log_ratio)
    advantages = advantages.detach()
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = LossStats(
            clip_fraction=float(masked_mean((clipped > unclipped).to(mask.dtype), mask)),
            approx_kl=float(masked_mean((ratio - 1.0) - log_ratio, mask)),
            ratio_mean=float(masked_mean(ratio, mask)),
        )
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float = 0.2) -> tuple[torch.Tensor, float]:
    """Clipped value loss: ``0.5 * mean(max((V - R)^2, (V_clip - R)^2))`` over response tokens,
    where ``V_clip = V_old + clip(V - V_old, -eps, eps)``. Returns (loss, clip fraction).

    ``cliprange_value <= 0`` turns clipping off (plain squared error).
    """
    mask = mask.to(values.dtype)
    returns, old_values = returns.detach(), old_values.detach()
    unclipped = (values - returns) ** 2
    if cliprange_value <= 0:
        return 0.5 * masked_mean(unclipped, mask), 0.0
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        fraction = float(masked_mean((clipped > unclipped).to(mask.dtype), mask))
    return loss, fraction


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(returns - values) / Var(returns) over response tokens: 1 is a perfect critic,
    0 no better than a constant, negative worse. NaN when the returns do not vary."""
    var_returns = masked_var(returns, mask)
    if float(var_returns) == 0.0:
        return math.nan
    return float(1.0 - masked_var(returns - values, mask) / var_returns)


def per_token_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The sampled estimate log pi(y_t) - log pi_ref(y_t) of KL(policy || reference), per token.

    Its sum over a response is an unbiased estimate of the sequence KL under the policy's
    samples, which is what the penalty in the reward needs (Ziegler et al. 2019).
    """
    return (logprobs - ref_logprobs) * mask.to(logprobs.dtype)


def penalised_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token rewards: ``-kl_coef * kl_t`` on every response token, plus the sequence score
    at its last response token (the reward model judges the whole response)."""
    mask = mask.to(kl.dtype)
    rewards = -kl_coef * kl * mask
    lengths = mask.sum(dim=1).long()
    if bool((lengths == 0).any()):
        raise ValueError("penalised_rewards: a response has no tokens")
    last = _last_index(mask)
    rewards[torch.arange(rewards.shape[0], device=rewards.device), last] += scores.to(rewards.dtype)
    return rewards


def _last_index(mask: torch.Tensor) -> torch.Tensor:
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), positions, torch.full_like(positions, -1)).max(dim=1).values


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


# --------------------------------------------------------------------------------------
# Critic-free policy gradients (RLOO, GRPO): group baselines instead of a value model
# --------------------------------------------------------------------------------------


def _groups(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    scores = scores.detach().float().reshape(-1)
    if group_size < 2:
        raise ValueError(f"group advantages need at least 2 samples per prompt, got {group_size}")
    if scores.numel() % group_size:
        raise ValueError(f"{scores.numel()} scores do not split into groups of {group_size}")
    return scores.view(-1, group_size)


def rloo_advantages(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """REINFORCE leave-one-out (Kool et al. 2019; Ahmadian et al. 2024): each sample's baseline is
    the mean score of the *other* samples of its prompt, ``A_i = r_i - mean_{j != i} r_j``.

    ``scores`` is [N] with the ``group_size`` samples of each prompt next to each other; returns [N].
    """
    g = _groups(scores, group_size)
    baseline = (g.sum(dim=1, keepdim=True) - g) / (group_size - 1)
    return (g - baseline).reshape(-1)


def grpo_advantages(scores: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO (Shao et al. 2024): ``A_i = (r_i - mean(group)) / (std(group) + eps)``, the std with
    Bessel's correction (as TRL); ``scale=False`` keeps only the mean shift (Dr. GRPO, Liu et al. 2025).
    A group whose samples all scored the same gets advantage 0: it carries no signal."""
    g = _groups(scores, group_size)
    advantages = g - g.mean(dim=1, keepdim=True)
    if scale:
        advantages = advantages / (g.std(dim=1, keepdim=True) + eps)
    return advantages.reshape(-1)


KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimates of KL(policy || reference) from tokens sampled by the policy (Schulman 2020),
    with ``x = log pi_ref(y) - log pi(y)``: ``k1 = -x`` (unbiased, can be negative), ``k2 = x^2 / 2``,
    ``k3 = exp(x) - 1 - x`` (unbiased, never negative; GRPO's penalty). Not masked."""
    x = ref_logprobs.detach() - logprobs
    if estimator == "k1":
        return -x
    if estimator == "k2":
        return 0.5 * x ** 2
    if estimator == "k3":
        return torch.exp(x) - 1.0 - x
    raise ValueError(f"unknown KL estimator '{estimator}'; use one of {', '.join(KL_ESTIMATORS)}")


@dataclass
class PGStats(LossStats):
    """``LossStats`` plus the mean per-token KL penalty term (0 without one)."""

    kl: float = 0.0


def policy_gradient_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                         mask: torch.Tensor, cliprange: float = 0.2, ref_logprobs: torch.Tensor | None = None,
                         kl_coef: float = 0.0, kl_estimator: str = "k3",
                         aggregation: str = "token") -> tuple[torch.Tensor, PGStats]:
    """The clipped surrogate of RLOO and GRPO: one advantage per response, on each of its tokens.

    Per token: ``max(-A r, -A clip(r, 1 - eps, 1 + eps)) + kl_coef * kl_t`` with
    ``r = exp(logprobs - old_logprobs)`` and ``kl_t = kl_estimate(logprobs, ref_logprobs, kl_estimator)``
    (only when ``ref_logprobs`` is given and ``kl_coef > 0``; its gradient flows through ``logprobs``).
    ``aggregation="token"``: the mean over every response token of the batch (DAPO; TRL's default);
    ``"sequence"``: each response's token mean, then the mean over responses (the GRPO paper).

    Args:
        logprobs, old_logprobs, mask: [batch, time]; advantages: [batch] (or [batch, time]).
    """
    if aggregation not in ("token", "sequence"):
        raise ValueError(f"aggregation must be 'token' or 'sequence', not '{aggregation}'")
    mask = mask.to(logprobs.dtype)
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    advantages = advantages.detach().to(logprobs.dtype)
    log_ratio = (logprobs - old_logprobs.detach()) * mask
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    per_token = torch.maximum(unclipped, clipped)
    kl = None
    if ref_logprobs is not None and kl_coef:
        kl = kl_estimate(logprobs, ref_logprobs, kl_estimator)
        per_token = per_token + kl_coef * kl
    if aggregation == "token":
        loss = masked_mean(per_token, mask)
    else:
        loss = ((per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()
    with torch.no_grad():
        stats = PGStats(
            clip_fraction=float(masked_mean((clipped > unclipped).expand_as(mask).to(mask.dtype), mask)),
            approx_kl=float(masked_mean((ratio - 1.0) - log_ratio, mask)),
            ratio_mean=float(masked_mean(ratio, mask)),
            kl=float(masked_mean(kl, mask)) if kl is not None else 0.0,
        )
    return loss, stats
