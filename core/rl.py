"""The contract between on-policy RL's loop and its parts.

One loop (plugins/rl) runs every on-policy algorithm: rollouts, scores, reward shaping, then
an **advantage estimator** and a **policy loss**, both looked up by name in the run's registry
(``alignkit_advantage_estimators`` and ``alignkit_policy_losses`` in core/hookspecs.py). An
algorithm is a composition of named parts in config (``optimizer.advantage=grpo
optimizer.policy_loss=ppo_clip``), so a third party adds an estimator or a loss without
touching the loop. The parts are pure functions of the records below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

import torch

AGGREGATIONS = ("token_mean", "sequence_mean", "sequence_sum_token_mean", "constant")
"""How a policy loss's per-token terms become one number (``optimizer.loss_aggregation``):

* ``token_mean``: the mean over every response token of the whole batch (DAPO; TRL's
  ``loss_type="dapo"`` and, per process, ``"bnpo"``);
* ``sequence_mean``: each response's token mean, then the mean over responses (the GRPO paper;
  TRL's ``loss_type="grpo"``);
* ``sequence_sum_token_mean``: each response's token *sum*, then the mean over responses
  (verl's ``seq-mean-token-sum``);
* ``constant``: the token sum divided by responses x ``max_new_tokens`` (Dr. GRPO; TRL's
  ``loss_type="dr_grpo"``), so no response's length changes its tokens' weight.
"""


class BatchReducer(Protocol):
    """Sums over every process's rows. An estimator that normalises over the batch (whitening,
    a global mean) uses it, so N processes compute what one process would on the whole batch.
    In one process it is the identity."""

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``value`` over the processes (the same shape on each)."""


class LocalReducer:
    """The ``BatchReducer`` of one process."""

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        return value


@dataclass(frozen=True)
class AdvantageInputs:
    """What an advantage estimator sees: one process's rows of a step's rollouts.

    Attributes:
        scores: [B] each response's shaped score (scaled, truncation-penalised, normalised and
            clipped as configured); the KL penalty is not subtracted yet.
        mask: [B, T] 1 on response tokens.
        kl_penalty: [B, T] the per-token KL penalty already multiplied by its coefficient, to be
            subtracted from the reward (zeros when the KL sits in the loss or there is no reference).
        group_size: k, the responses per prompt: rows ``g*k .. g*k+k-1`` answer one prompt (1: no groups).
            A process always holds whole groups.
        values: [B, T] the critic's values, given to estimators that declare ``needs_critic``.
        options: the optimizer's options (``gamma``, ``lam``, ...), read by name.
        reducer: sums over every process's rows (``LocalReducer`` in one process).
    """

    scores: torch.Tensor
    mask: torch.Tensor
    kl_penalty: torch.Tensor
    group_size: int = 1
    values: torch.Tensor | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    reducer: BatchReducer = field(default_factory=LocalReducer)


@dataclass(frozen=True)
class AdvantageOutputs:
    """An estimator's answer: ``advantages`` [B, T] (0 off the mask), ``returns`` [B, T] (the
    critic's regression target; None without a critic) and metrics to log (plain floats)."""

    advantages: torch.Tensor
    returns: torch.Tensor | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)


AdvantageFn = Callable[[AdvantageInputs], AdvantageOutputs]


@dataclass(frozen=True)
class PolicyLossInputs:
    """What a policy loss sees: one micro-batch, all [b, t] on the training device.

    Attributes:
        logprobs: the policy's per-token log-probs now (carry the gradient).
        old_logprobs: the same tokens' log-probs when they were sampled (no gradient).
        advantages: from the estimator (no gradient).
        mask: 1 on response tokens.
        ref_logprobs: the frozen reference's log-probs, or None without a reference.
        options: the optimizer's options (``clip_low``, ``clip_high``, ``kl_coef``, ``beta``, ...).
    """

    logprobs: torch.Tensor
    old_logprobs: torch.Tensor
    advantages: torch.Tensor
    mask: torch.Tensor
    ref_logprobs: torch.Tensor | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyLossOutputs:
    """A policy loss's answer.

    ``per_token`` [b, t] holds each token's loss term; the loop aggregates it over the whole
    step's batch (``AGGREGATIONS``), so micro-batches and processes add up exactly. A loss over
    pairs of responses (``PolicyLossEntry.pairwise``) puts each pair's loss on the chosen row's
    first response token and 0 elsewhere, and the loop divides by the number of pairs.
    ``metrics`` are means over this micro-batch's tokens (plain floats)."""

    per_token: torch.Tensor
    metrics: Mapping[str, float] = field(default_factory=dict)


PolicyLossFn = Callable[[PolicyLossInputs], PolicyLossOutputs]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is 1 (0 when there are none)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: str, max_new_tokens: int) -> tuple[torch.Tensor, float]:
    """(numerator, denominator) of the loss of ``per_token`` under ``mode`` (``AGGREGATIONS``).

    The loop sums numerators over micro-batches (and processes, through the gradient all-reduce)
    and divides by the denominators of the whole step's batch, so the result equals the loss of
    one large batch however the rows are split.
    """
    mask = mask.to(per_token.dtype)
    if mode == "token_mean":
        return (per_token * mask).sum(), float(mask.sum())
    if mode == "sequence_mean":
        return ((per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).sum(), float(mask.shape[0])
    if mode == "sequence_sum_token_mean":
        return (per_token * mask).sum(), float(mask.shape[0])
    if mode == "constant":
        return (per_token * mask).sum(), float(mask.shape[0] * max_new_tokens)
    raise ValueError(f"loss aggregation must be one of {', '.join(AGGREGATIONS)}, not '{mode}'")
