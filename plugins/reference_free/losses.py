"""Pure losses of the reference-free preference methods ORPO and CPO (torch only, no model code).

Neither needs a reference model: both add a negative log-likelihood (NLL) term on the chosen
response to a preference term computed from the policy's own log-probabilities, so one
forward pass of the policy over chosen and rejected responses is all a step costs.

``orpo_loss``  ORPO, Odds Ratio Preference Optimization (Hong et al. 2024)::

                   odds(y) = p / (1 - p),  p = exp(mean per-token log-prob of y)
                   log_odds = log odds(y_w) - log odds(y_l)
                            = (lw - ll) - (log(1 - exp(lw)) - log(1 - exp(ll)))
                   loss = NLL(y_w) - beta * logsig(log_odds)

               ``lw``/``ll`` are *length-normalised* (mean per token) log-probs, as in the
               paper's Eq. 4 and TRL's ``ORPOTrainer.odds_ratio_loss``; ``beta`` is the
               paper's lambda. Rewards (for logging) are ``beta * lw`` and ``beta * ll``.

``cpo_loss``   CPO, Contrastive Preference Optimization (Xu et al. 2024): DPO's loss with
               the reference log-probs set to 0 (``plugins/dpo/losses.dpo_loss``), plus NLL on
               the chosen response weighted by ``cpo_alpha``. With ``h = pc - pr`` the
               difference of *summed* log-probs (``CPO_LOSS_TYPES``, as TRL's
               ``CPOTrainer.cpo_loss``)::

                   sigmoid  -(1-eps) * logsig(beta*h) - eps * logsig(-beta*h)   (paper, Eq. 3)
                   hinge    relu(1 - beta*h)
                   ipo      (h - 1/(2*beta))**2                  h from mean per-token log-probs
                   simpo    -logsig(beta*h - simpo_gamma),       h from mean per-token log-probs
                            (CPO-SimPO; with cpo_alpha=0 it is SimPO)

               TRL also applies ``label_smoothing`` to ``simpo``; here, as in ``dpo_loss``, it is
               ``sigmoid``'s only, and AlphaPO's reward shaping (TRL's ``alpha``) is not offered.

               ``ipo`` and ``simpo`` work on length-normalised log-probs (TRL does the same), so
               they need both lengths; ``cpo_loss`` divides the sums by them. Rewards are
               ``beta`` times the log-probs the loss type uses.

Both return per-example losses (the NLL term broadcast onto each example) so that
``losses.mean()`` is the batch loss, exactly ``nll + mean(preference term)`` as TRL computes
it when ``chosen_nll`` is the batch's token-mean NLL. The NLL is an argument, not computed
here: which tokens it covers is the caller's choice (alignkit: the chosen response's tokens;
TRL's ORPO: prompt and response).

Computation is done in at least float32 (bf16/fp16 inputs are upcast); float64 stays float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from alignkit.plugins.dpo.losses import dpo_loss

__all__ = ["CPO_LOSS_TYPES", "cpo_loss", "log_odds_ratio", "orpo_loss"]

CPO_LOSS_TYPES: tuple[str, ...] = ("sigmoid", "hinge", "ipo", "simpo")

_CPO_LENGTH_NORMALISED = frozenset({"ipo", "simpo"})


def _beta(beta: float) -> float:
    beta = float(beta)
    if not (beta > 0.0 and beta != float("inf")):
        raise ValueError(f"beta must be a positive finite number, got {beta}")
    return beta


def _pair(chosen: torch.Tensor, rejected: torch.Tensor, names: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Both tensors as the same floating dtype (at least float32), checked for shape."""
    for name, x in zip(names, (chosen, rejected)):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point torch.Tensor of log-probs")
    if chosen.shape != rejected.shape:
        raise ValueError(f"{names[1]} has shape {tuple(rejected.shape)}, expected {tuple(chosen.shape)} "
                         f"(same as {names[0]})")
    dtype = torch.promote_types(torch.promote_types(chosen.dtype, rejected.dtype), torch.float32)
    return chosen.to(dtype), rejected.to(device=chosen.device, dtype=dtype)


def _nll(chosen_nll: torch.Tensor | float, shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """The NLL term as a tensor that broadcasts onto the batch: a scalar or one value per example."""
    nll = chosen_nll if isinstance(chosen_nll, torch.Tensor) else torch.tensor(float(chosen_nll))
    if nll.dim() != 0 and nll.shape != shape:
        raise ValueError(f"chosen_nll has shape {tuple(nll.shape)}: give a scalar (the batch's token-mean NLL) "
                         f"or one value per example {tuple(shape)}")
    return nll.to(device=like.device, dtype=like.dtype)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, without cancellation (Maechler 2012: switch at -log 2)."""
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def log_odds_ratio(chosen_logps_mean: torch.Tensor, rejected_logps_mean: torch.Tensor) -> torch.Tensor:
    """``log(odds(y_w) / odds(y_l))`` from mean per-token log-probs, ``odds = p / (1 - p)``.

    A mean log-prob of exactly 0 (p = 1: infinite odds) is taken as the largest value below 0,
    so the result stays finite; a positive one is not a log-probability and is an error.
    """
    lw, ll = _pair(chosen_logps_mean, rejected_logps_mean, ("chosen_logps_mean", "rejected_logps_mean"))
    if bool((lw > 0).any()) or bool((ll > 0).any()):
        raise ValueError("mean log-probs must be <= 0 (log of a probability); got a positive value")
    ceiling = -torch.finfo(lw.dtype).tiny
    lw, ll = lw.clamp(max=ceiling), ll.clamp(max=ceiling)
    return (lw - ll) - (_log1mexp(lw) - _log1mexp(ll))


def orpo_loss(
    chosen_logps_mean: torch.Tensor,
    rejected_logps_mean: torch.Tensor,
    chosen_nll: torch.Tensor | float,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """ORPO's per-example losses ``chosen_nll - beta * logsig(log_odds)`` (see the module docstring).

    Args:
        chosen_logps_mean, rejected_logps_mean: the policy's mean per-token log-probs of the
            chosen and rejected responses, shape ``[batch]``; gradients flow through these.
        chosen_nll: NLL of the chosen responses: a scalar (the batch's token-mean NLL, TRL's
            form) or one value per example.
        beta: weight of the odds-ratio term (the paper's lambda, > 0).

    Returns:
        ``(losses, chosen_rewards, rejected_rewards, log_odds)``, each shape ``[batch]``;
        rewards (``beta * mean log-prob``) and ``log_odds`` are detached, for logging.
    """
    beta = _beta(beta)
    log_odds = log_odds_ratio(chosen_logps_mean, rejected_logps_mean)
    lw, ll = _pair(chosen_logps_mean, rejected_logps_mean, ("chosen_logps_mean", "rejected_logps_mean"))
    losses = _nll(chosen_nll, lw.shape, lw) - beta * F.logsigmoid(log_odds)
    return losses, (beta * lw).detach(), (beta * ll).detach(), log_odds.detach()


def cpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    chosen_nll: torch.Tensor | float,
    *,
    beta: float,
    cpo_alpha: float = 1.0,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    simpo_gamma: float = 0.5,
    chosen_lengths: torch.Tensor | Sequence[float] | None = None,
    rejected_lengths: torch.Tensor | Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CPO's per-example losses ``preference term + cpo_alpha * chosen_nll`` (see the module docstring).

    The preference term is ``dpo_loss`` with the reference log-probs at 0 (CPO's approximation of
    a uniform reference), so it shares DPO's validation and its IPO/SimPO per-token averaging.

    Args:
        chosen_logps, rejected_logps: the policy's *summed* log-probs of the chosen and
            rejected responses, shape ``[batch]``.
        chosen_nll: NLL of the chosen responses, a scalar or one value per example.
        beta: inverse temperature (> 0); for ``ipo`` the regulariser tau, target ``1/(2*beta)``.
        cpo_alpha: weight of the NLL term (TRL's ``cpo_alpha``); 0 leaves the preference term alone.
        loss_type: one of ``CPO_LOSS_TYPES``.
        label_smoothing: label-flip rate eps in ``[0, 0.5)``, ``sigmoid`` only.
        simpo_gamma: SimPO's target reward margin, used by ``simpo`` only.
        chosen_lengths, rejected_lengths: completion token counts; required by ``ipo`` and ``simpo``.

    Returns:
        ``(losses, chosen_rewards, rejected_rewards)``, each shape ``[batch]``; rewards are detached.
    """
    if loss_type not in CPO_LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {CPO_LOSS_TYPES}")
    if float(cpo_alpha) < 0.0:
        raise ValueError(f"cpo_alpha (the NLL weight) must be >= 0, got {cpo_alpha}")
    pc, pr = _pair(chosen_logps, rejected_logps, ("chosen_logps", "rejected_logps"))
    if loss_type in _CPO_LENGTH_NORMALISED:
        for name, lengths in (("chosen_lengths", chosen_lengths), ("rejected_lengths", rejected_lengths)):
            if lengths is None:
                raise ValueError(f"{name} is required for loss_type={loss_type!r} (it averages log-probs per token)")
    else:  # dpo_loss would average ipo's log-ratios when given lengths; sigmoid and hinge use sums
        chosen_lengths = rejected_lengths = None
    zero = None if loss_type == "simpo" else torch.zeros_like(pc)
    preference, chosen_rewards, rejected_rewards = dpo_loss(
        pc, pr, zero, zero, beta=beta, loss_type=loss_type, label_smoothing=label_smoothing,
        chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths,
        gamma=float(simpo_gamma) if loss_type == "simpo" else 0.0)
    return preference + float(cpo_alpha) * _nll(chosen_nll, pc.shape, pc), chosen_rewards, rejected_rewards
