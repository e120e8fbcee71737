"""Advantage estimators: how on-policy RL turns a step's scores into per-token advantages.

Each estimator is a pure ``AdvantageFn`` (``alignkit.core.rl``): [B] scores, the [B, T] response
mask and KL penalty, groups of ``group_size`` responses per prompt (and the critic's values for
GAE) in; [B, T] advantages, 0 off the mask, out. What needs the whole batch (whitening, a global
mean) sums through ``inputs.reducer``, so N processes compute what one process would. The
formulas are pinned to hand-computed values in tests/plugins/rl/test_advantages.py.
"""

from __future__ import annotations

import torch

from alignkit.core.rl import AdvantageInputs, AdvantageOutputs, BatchReducer, LocalReducer

DEFAULT_OPTIONS = {
    "gamma": 1.0,  # discount (gae, reinforce_pp)
    "lam": 0.95,  # GAE's lambda
    "whiten_advantages": True,  # gae: whiten over the batch's response tokens
    "normalize_advantages": False,  # rloo: (A - mean) / (std + 1e-4) over the batch
    "scale_rewards": True,  # grpo: divide by the group's std
    "ties": "skip",  # best_vs_worst: a group whose scores are all equal trains nothing | keep: first vs second
}
"""The options the estimators read, with the values they take when the optimizer does not set them."""

TIES = ("skip", "keep")
GROUP_EPS = 1e-4  # added to a std before dividing (GRPO's and RLOO's normalisation, as TRL)


def _option(inputs: AdvantageInputs, key: str):
    value = inputs.options.get(key)
    return DEFAULT_OPTIONS[key] if value is None else value


# -- building blocks ----------------------------------------------------------------------


def shaped_rewards(scores: torch.Tensor, kl_penalty: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token rewards: ``-kl_penalty_t`` on every response token, plus the sequence score at its
    last response token (the reward model judges the whole response; Ziegler et al. 2019)."""
    mask = mask.to(kl_penalty.dtype)
    rewards = -kl_penalty * mask
    if bool((mask.sum(dim=1) == 0).any()):
        raise ValueError("shaped_rewards: a response has no tokens")
    rewards[torch.arange(rewards.shape[0], device=rewards.device), last_index(mask)] += scores.to(rewards.dtype)
    return rewards


def last_index(mask: torch.Tensor) -> torch.Tensor:
    """[B] the position of each row's last response token (-1 for a row without one)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), positions, torch.full_like(positions, -1)).max(dim=1).values


def sequence_scores(inputs: AdvantageInputs) -> torch.Tensor:
    """[B] each response's score minus its summed KL penalty (the scalar a group baseline compares)."""
    mask = inputs.mask.to(inputs.kl_penalty.dtype)
    return inputs.scores.to(inputs.kl_penalty.dtype) - (inputs.kl_penalty * mask).sum(dim=1)


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


def returns_to_go(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """``G_t = r_t + gamma * G_{t+1}`` within each response, 0 off the mask: the running return
    restarts after each masked-out position, as verl's REINFORCE++ does."""
    rewards = rewards.detach()
    mask = mask.to(rewards.dtype)
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = rewards[:, t] + gamma * running
        returns[:, t] = running
        running = running * mask[:, t]
    return returns * mask


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8,
           reducer: BatchReducer | None = None) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps)`` over the masked positions of every process's rows
    (``reducer``; one process without it), the variance Bessel-corrected; 0 off the mask.

    With ``shift_mean=False`` it only divides by the std (the sign of each value is kept).
    """
    reducer = reducer or LocalReducer()
    m = mask.to(x.dtype)
    n = reducer.sum(m.sum())
    mean = reducer.sum((x * m).sum()) / n.clamp(min=1)
    var = reducer.sum((((x - mean) ** 2) * m).sum()) / n.clamp(min=1)
    if n > 1:
        var = var * n / (n - 1)
    out = (x - mean if shift_mean else x) * torch.rsqrt(var + eps)
    return out * m


def _groups(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    scores = scores.detach().reshape(-1)
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
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


def grpo_advantages(scores: torch.Tensor, group_size: int, scale: bool = True, eps: float = GROUP_EPS) -> torch.Tensor:
    """GRPO (Shao et al. 2024): ``A_i = (r_i - mean(group)) / (std(group) + eps)``, the std with
    Bessel's correction (as TRL); ``scale=False`` keeps only the mean shift (Dr. GRPO, Liu et al. 2025).
    A group whose samples all scored the same gets advantage 0: it carries no signal."""
    g = _groups(scores, group_size)
    advantages = g - g.mean(dim=1, keepdim=True)
    if scale:
        advantages = advantages / (g.std(dim=1, keepdim=True) + eps)
    return advantages.reshape(-1)


def best_vs_worst_pairs(scores: torch.Tensor, group_size: int, ties: str = "skip") -> list[tuple[int, int]]:
    """(chosen row, rejected row) per group of ``group_size`` consecutive scores: the first highest
    and the first lowest. A group whose scores are all equal has no preference: ``ties=skip`` leaves
    it out, ``ties=keep`` pairs its first response (chosen) with its second, as TRL does."""
    if ties not in TIES:
        raise ValueError(f"ties must be one of {', '.join(TIES)}, not '{ties}'")
    if scores.numel() % group_size:
        raise ValueError(f"{scores.numel()} scores do not split into groups of {group_size}")
    pairs = []
    for g, group in enumerate(scores.reshape(-1, group_size)):
        best, worst = int(group.argmax()), int(group.argmin())
        if group[best] == group[worst]:
            if ties == "skip":
                continue
            best, worst = 0, 1
        pairs.append((g * group_size + best, g * group_size + worst))
    return pairs


def _per_token(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B] sequence advantages on each of the row's response tokens, 0 elsewhere."""
    return advantages.unsqueeze(1) * mask.to(advantages.dtype)


def _batch_normalised(x: torch.Tensor, reducer: BatchReducer, eps: float = GROUP_EPS) -> torch.Tensor:
    """``(x - mean) / (std + eps)`` over every process's [N] values (unbiased std, as ``Tensor.std``)."""
    n = reducer.sum(torch.tensor(float(x.numel()), dtype=x.dtype, device=x.device))
    if n <= 1:
        return x
    mean = reducer.sum(x.sum()) / n
    std = torch.sqrt(reducer.sum(((x - mean) ** 2).sum()) / (n - 1))
    return (x - mean) / (std + eps)


# -- the estimators -------------------------------------------------------------------------


def gae(inputs: AdvantageInputs) -> AdvantageOutputs:
    """PPO's estimator: per-token rewards (``shaped_rewards``), GAE with ``gamma`` and ``lam``
    against the critic's values, then whitening over the batch (``whiten_advantages``)."""
    if inputs.values is None:
        raise ValueError("advantage 'gae' needs the critic's values (it declares needs_critic)")
    rewards = shaped_rewards(inputs.scores, inputs.kl_penalty, inputs.mask)
    advantages, returns = compute_gae(rewards, inputs.values, inputs.mask, _option(inputs, "gamma"),
                                      _option(inputs, "lam"))
    if _option(inputs, "whiten_advantages"):
        advantages = whiten(advantages, inputs.mask, reducer=inputs.reducer)
    return AdvantageOutputs(advantages=advantages, returns=returns)


def rloo(inputs: AdvantageInputs) -> AdvantageOutputs:
    """RLOO: the score minus the KL penalty, minus the mean of the prompt's other samples;
    ``normalize_advantages`` then standardises over the whole batch."""
    advantages = rloo_advantages(sequence_scores(inputs), inputs.group_size)
    if _option(inputs, "normalize_advantages"):
        advantages = _batch_normalised(advantages, inputs.reducer)
    return AdvantageOutputs(advantages=_per_token(advantages, inputs.mask))


def grpo(inputs: AdvantageInputs) -> AdvantageOutputs:
    """GRPO: the group's mean subtracted, divided by its std + 1e-4 unless ``scale_rewards=false``."""
    advantages = grpo_advantages(sequence_scores(inputs), inputs.group_size, scale=_option(inputs, "scale_rewards"))
    return AdvantageOutputs(advantages=_per_token(advantages, inputs.mask))


def dr_grpo(inputs: AdvantageInputs) -> AdvantageOutputs:
    """Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training"): the group's mean
    subtracted, no division by its std (which favours too-easy and too-hard prompts); TRL's
    ``scale_rewards="none"``."""
    advantages = grpo_advantages(sequence_scores(inputs), inputs.group_size, scale=False)
    return AdvantageOutputs(advantages=_per_token(advantages, inputs.mask))


def reinforce_pp(inputs: AdvantageInputs) -> AdvantageOutputs:
    """REINFORCE++ (Hu 2025, arXiv:2501.03262): per-token rewards with the KL in them
    (``shaped_rewards``), their returns-to-go with ``gamma`` (1 by default), whitened over every
    response token of the batch; no critic, no group baseline. As verl's
    ``compute_reinforce_plus_plus_outcome_advantage`` (verl/trainer/ppo/core_algos.py:
    ``masked_whiten(returns, response_mask) * response_mask``)."""
    rewards = shaped_rewards(inputs.scores, inputs.kl_penalty, inputs.mask)
    returns = returns_to_go(rewards, inputs.mask, _option(inputs, "gamma"))
    advantages = whiten(returns, inputs.mask, reducer=inputs.reducer)
    return AdvantageOutputs(advantages=advantages, returns=returns)


def best_vs_worst(inputs: AdvantageInputs) -> AdvantageOutputs:
    """Online DPO's pairing (Guo et al. 2024): in each group the first highest-scored response
    gets +1 (chosen) and the first lowest -1 (rejected) on its tokens, every other response 0;
    ``ties`` says what a group whose scores are all equal does (``best_vs_worst_pairs``)."""
    scores = sequence_scores(inputs)
    pairs = best_vs_worst_pairs(scores, inputs.group_size, _option(inputs, "ties"))
    advantages = torch.zeros_like(scores)
    for chosen, rejected in pairs:
        advantages[chosen], advantages[rejected] = 1.0, -1.0
    return AdvantageOutputs(advantages=_per_token(advantages, inputs.mask), metrics={"pairs": float(len(pairs))})
