"""Pure Bradley-Terry reward-model losses (no model code), unit-tested on hand-computed values.

Bradley-Terry (1952) models P(y_w preferred over y_l | x) = sigmoid(r(x, y_w) - r(x, y_l)).
The per-pair loss is the cross-entropy against the label:

    z    = r_w - r_l - (2p - 1) * margin
    loss = -[p * log sigmoid(z) + (1 - p) * log sigmoid(-z)]  +  centering * (r_w + r_l)^2

* ``p`` (``strength``) is the probability that the chosen response is preferred: 1 for hard
  labels (the classic ``-log sigmoid(r_w - r_l)``), below 1 for soft AI or averaged human labels.
* ``margin`` (Llama 2, Touvron et al. 2023) asks the preferred reward to exceed the other one
  by at least that much before the loss flattens; it may differ per pair. Llama 2 uses it with
  hard labels only; for a soft label it is scaled by ``2p - 1``, the label's lean: ``p = 1``
  is the full margin on the chosen side, ``p = 0`` the full margin on the rejected side (the
  same loss as the swapped pair with ``p = 1``), and a tie (``p = 0.5``) gets none, so it is
  not pushed toward ``r_w - r_l = margin`` but stays at rest where the rewards are equal.
* The centering term (Eisenstein et al. 2023, "Helping or Herding") pins the otherwise free
  additive constant of the reward near zero, so rewards of different runs are comparable and
  PPO's reward scale does not drift. Bradley-Terry itself is invariant to that constant.

Tensors may carry extra trailing dimensions (e.g. ``[batch, heads]`` for an ensemble);
``strength`` and ``margin`` broadcast against them from ``[batch]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["bradley_terry_loss", "preference_accuracy"]


def _per_pair(name: str, value: float | Sequence[float] | torch.Tensor | None, like: torch.Tensor,
              default: float) -> torch.Tensor:
    """A scalar or ``[batch]`` value as a tensor broadcastable against ``like`` ([batch, ...])."""
    if value is None:
        value = default
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device).detach()
    if t.dim() == 0:
        return t
    if t.dim() != 1 or t.shape[0] != like.shape[0]:
        raise ValueError(f"{name} has shape {tuple(t.shape)}; expected a scalar or [{like.shape[0]}]")
    return t.reshape(-1, *([1] * (like.dim() - 1)))


def bradley_terry_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    *,
    margin: float | Sequence[float] | torch.Tensor | None = None,
    strength: float | Sequence[float] | torch.Tensor | None = None,
    centering: float = 0.0,
) -> torch.Tensor:
    """Per-pair losses (not reduced), same shape as ``chosen_rewards``.

    Args:
        chosen_rewards, rejected_rewards: r(x, y_w) and r(x, y_l), shape ``[batch, ...]``.
        margin: required reward gap for a hard label, a scalar or ``[batch]``; default 0;
            scaled by ``2 * strength - 1`` for soft labels.
        strength: P(chosen preferred) in [0, 1], a scalar or ``[batch]``; default 1 (hard labels).
        centering: coefficient of the auxiliary ``(r_w + r_l)^2`` term; >= 0.

    Raises:
        ValueError: mismatched shapes, strength outside [0, 1], a negative centering
            coefficient, or a non-floating-point reward tensor.
    """
    if not isinstance(chosen_rewards, torch.Tensor) or not chosen_rewards.is_floating_point():
        raise ValueError("chosen_rewards must be a floating-point torch.Tensor")
    if not isinstance(rejected_rewards, torch.Tensor) or rejected_rewards.shape != chosen_rewards.shape:
        raise ValueError(f"rejected_rewards must be a tensor of shape {tuple(chosen_rewards.shape)}")
    if chosen_rewards.dim() == 0:
        raise ValueError("rewards need a batch dimension")
    centering = float(centering)
    if not centering >= 0.0:
        raise ValueError(f"centering must be >= 0, got {centering}")
    dtype = torch.promote_types(chosen_rewards.dtype, torch.float32)
    rw, rl = chosen_rewards.to(dtype), rejected_rewards.to(dtype)
    m = _per_pair("margin", margin, rw, 0.0)
    p = _per_pair("strength", strength, rw, 1.0)
    if p.numel() and not bool(((p >= 0) & (p <= 1)).all()):
        raise ValueError("strength must lie in [0, 1] (probability that chosen is preferred)")
    z = rw - rl - (2.0 * p - 1.0) * m  # the margin leans the way the label does; a tie has none
    losses = -(p * F.logsigmoid(z) + (1.0 - p) * F.logsigmoid(-z))
    if centering:
        losses = losses + centering * (rw + rl) ** 2
    return losses


def preference_accuracy(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                        strength: torch.Tensor | Sequence[float] | None = None) -> float:
    """Share of pairs whose reward order agrees with the label.

    A pair counts as labelled "chosen better" when ``strength > 0.5`` and "rejected better"
    when ``strength < 0.5``; pairs at exactly 0.5 carry no order and are left out. Equal rewards
    count as wrong. Returns ``nan`` when no pair has an order.
    """
    rw, rl = chosen_rewards.detach().float(), rejected_rewards.detach().float()
    if rw.shape != rl.shape or rw.dim() != 1:
        raise ValueError("chosen_rewards and rejected_rewards must both have shape [batch]")
    p = torch.ones_like(rw) if strength is None else torch.as_tensor(strength, dtype=rw.dtype, device=rw.device)
    ordered = p != 0.5
    if not bool(ordered.any()):
        return float("nan")
    right = torch.where(p > 0.5, rw > rl, rl > rw)
    return right[ordered].float().mean().item()
