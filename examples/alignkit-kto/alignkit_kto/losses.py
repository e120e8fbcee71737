"""The KTO objective (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic
Optimization", eq. 8), as pure functions of log-probabilities so they are tested on numbers.

With the implied reward r(x, y) = log pi(y|x) - log pi_ref(y|x) and a reference point z0:

    v(x, y) = w_D * sigmoid(beta * (r - z0))   for a desirable y
              w_U * sigmoid(beta * (z0 - r))   for an undesirable y
    loss    = w_y - v(x, y)

z0 estimates KL(pi || pi_ref) from *mismatched* pairs of the batch (a prompt with another
example's completion), clamped at 0 and not differentiated through, as in the paper.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import torch


def kl_reference_point(policy_mismatched: torch.Tensor, reference_mismatched: torch.Tensor) -> torch.Tensor:
    """z0 = max(0, mean(log pi(y_j|x_i) - log pi_ref(y_j|x_i))) over mismatched pairs; no gradient."""
    if policy_mismatched.numel() == 0:
        return policy_mismatched.new_zeros(())
    return (policy_mismatched.detach() - reference_mismatched.detach()).mean().clamp(min=0)


def kto_loss(policy_logps: torch.Tensor, reference_logps: torch.Tensor, desirable: torch.Tensor,
             z0: torch.Tensor, *, beta: float, desirable_weight: float = 1.0,
             undesirable_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example KTO losses and implied rewards ``beta * r`` (detached), both shaped [N].

    :param policy_logps: summed completion log-probs under the policy, [N].
    :param reference_logps: the same under the frozen reference, [N].
    :param desirable: bool [N], True for desirable completions.
    :param z0: the KL reference point (a scalar, see ``kl_reference_point``).
    """
    rewards = policy_logps - reference_logps
    z0 = z0.detach().to(rewards.dtype)
    desirable = desirable.to(torch.bool)
    value = torch.where(desirable,
                        desirable_weight * torch.sigmoid(beta * (rewards - z0)),
                        undesirable_weight * torch.sigmoid(beta * (z0 - rewards)))
    weight = torch.where(desirable, torch.full_like(rewards, desirable_weight),
                         torch.full_like(rewards, undesirable_weight))
    return weight - value, (beta * rewards).detach()


def mismatched_partners(prompt_keys: Sequence[Hashable]) -> list[int]:
    """For each example of a batch, another example whose completion it is paired with to
    estimate z0: the next one (cyclically) with a *different* prompt, since examples derived
    from one preference pair share their prompt; itself only when every prompt is the same."""
    n = len(prompt_keys)
    partners = []
    for i in range(n):
        partner = i
        for step in range(1, n):
            j = (i + step) % n
            if prompt_keys[j] != prompt_keys[i]:
                partner = j
                break
        partners.append(partner)
    return partners


def weight_balance(n_desirable: int, n_undesirable: int, desirable_weight: float,
                   undesirable_weight: float) -> float:
    """w_D * n_D / (w_U * n_U); the paper recommends keeping it within [1, 4/3]."""
    if n_undesirable == 0 or undesirable_weight == 0:
        return float("inf")
    return desirable_weight * n_desirable / (undesirable_weight * n_undesirable)
