"""Pure preference-optimisation losses (torch only, no model code).

Shared by the offline DPO family (plugins/dpo, plugins/reference_free) and online DPO's policy
loss (plugins/rl, ``dpo_pairwise``); shared math lives in core, so neither plugin imports the other for it.

Every loss here works on per-sequence *summed* log-probabilities of the completion tokens,
shape ``[batch]``: the policy's and (except for SimPO) a frozen reference model's log-probs of
the chosen response ``y_w`` and of the rejected response ``y_l``. Notation used below::

    h = (pc - rc) - (pr - rr)      # log-ratio margin, pc = policy chosen, rr = reference rejected
    z = beta * h                   # DPO logit
    logsig = torch.nn.functional.logsigmoid

``dpo_loss`` returns ``(losses, chosen_rewards, rejected_rewards)``: per-example losses (not
reduced, so the caller can mask or weight them) and the implicit rewards, detached, whose
difference ``chosen - rejected`` is the quantity the loss is a function of (``beta * h`` for the
reference-based losses, the length-normalised equivalents for IPO-with-lengths and SimPO).

Loss types (``LOSS_TYPES``):

``sigmoid``  DPO (Rafailov et al. 2023): ``-logsig(z)``. With ``strength`` (P(chosen preferred)
             per example, e.g. soft AI-feedback labels) it is the cross-entropy against that
             target: ``-(s*logsig(z) + (1-s)*logsig(-z))``, minimised at ``z = logit(s)``.
             ``label_smoothing`` eps mixes in label noise, i.e. the target becomes
             ``(1-eps)*s + eps*(1-s)`` (with no ``strength``: ``s = 1``, which is cDPO).
``cdpo``     Conservative DPO (Mitchell 2023): ``(1-eps)*(-logsig(z)) + eps*(-logsig(-z))``;
             identical to ``sigmoid`` with the same ``label_smoothing``; kept as its own name so
             a config says what it means.
``robust``   Robust DPO (Chowdhury et al. 2024), unbiased under flip rate eps:
             ``l(z) = ((1-eps)*(-logsig(z)) - eps*(-logsig(-z))) / (1-2*eps)``, ``0 <= eps < 0.5``.
             Can be negative; its gradient always pushes ``h`` up. With ``strength`` s it is
             the expectation over the label, ``s*l(z) + (1-s)*l(-z)`` (at eps = 0: soft ``sigmoid``).
``ipo``      IPO (Azar et al. 2023): ``(h - 1/(2*beta))**2`` (beta is the paper's tau).
             See the note on length averaging below. With ``strength`` s the target is
             ``(2s-1)/(2*beta)``: the paper's loss ``(h - (I - 1/2)/tau)**2`` with the preference
             I = s instead of 1, so a tie (s = 0.5) asks for h = 0 and s = 0 mirrors s = 1.
``rdpo``     Length-regularised DPO (Park et al. 2024):
             ``-logsig(beta*h + alpha*(|y_w| - |y_l|))``. Needs both lengths. See the note on
             the sign below. It is Bradley-Terry on a length-penalised reward, so ``strength`` s
             gives the same cross-entropy as ``sigmoid``: ``-(s*logsig(x) + (1-s)*logsig(-x))``.
``simpo``    SimPO (Meng et al. 2024), reference-free:
             ``-logsig(beta*(pc/|y_w| - pr/|y_l|) - gamma)``; reference log-probs are ignored
             (may be ``None``); needs both lengths; rewards are ``beta * logp / length``.
``hinge``    SLiC-style hinge (Zhao et al. 2023, as in TRL): ``relu(1 - beta*h)``.

Soft labels (``strength``)
    ``simpo`` and ``hinge`` have no published soft-label form: both ask the chosen side to win by
    a fixed margin (``gamma``, 1), which has no meaning for a tie, so a ``strength`` is refused
    for them rather than turned into a hard preference (``SOFT_LABEL_LOSS_TYPES`` lists the rest).

IPO and length averaging
    The IPO paper states the loss on sequence-level log-likelihood ratios, but with token-summed
    log-probs ``h`` grows with response length while the target ``1/(2*beta)`` does not, so the
    squared loss (and the meaning of beta) then depends on how long the responses are, and long
    pairs dominate the batch. TRL therefore divides each log-ratio by its completion length for
    IPO (stating that the IPO authors confirmed their reported results use that form). We do
    the same *when lengths are given*: ``h = (pc-rc)/|y_w| - (pr-rr)/|y_l|``, and the rewards
    are then ``beta`` times these per-token log-ratios so ``chosen - rejected == beta*h`` still
    holds. Without lengths the paper's sequence-level form is used unchanged. Pass both lengths
    or neither.

R-DPO sign convention
    Park et al. derive R-DPO from the length-penalised objective ``max E[r - alpha*|y|] -
    beta*KL``, whose optimum gives ``r = beta*log(pi/pi_ref) + alpha*|y| + const``; plugging
    that into Bradley-Terry gives the logit ``beta*h + alpha*(|y_w| - |y_l|)``, i.e. the length
    term is *added* inside the sigmoid (this is the paper's Eq. and SimPO's Table 3). The
    policy's implicit reward is the length-penalised one, so when the chosen answer is longer
    part of the preference is already "explained by length": the loss is smaller and the push
    on the policy towards the longer answer weaker. Subtracting the term would do the opposite
    and reward verbosity. ``alpha`` is in reward units (not multiplied by beta); lengths are
    token counts.

Arguments that a loss type does not use are rejected when they would change the result
(non-zero ``label_smoothing``, ``alpha``, ``gamma``, or a ``strength`` for ``simpo``/``hinge``) so a misconfiguration is
not silently ignored; ``chosen_lengths``/``rejected_lengths`` are data and are simply unused by
``sigmoid``, ``cdpo``, ``robust`` and ``hinge``.

Computation is done in at least float32 (bf16/fp16 inputs are upcast); float64 inputs stay
float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["LOSS_TYPES", "SOFT_LABEL_LOSS_TYPES", "dpo_loss", "implicit_reward_accuracy"]

LOSS_TYPES: tuple[str, ...] = ("sigmoid", "cdpo", "robust", "ipo", "rdpo", "simpo", "hinge")

_NEEDS_REFERENCE = frozenset({"sigmoid", "cdpo", "robust", "ipo", "rdpo", "hinge"})
_USES_LABEL_SMOOTHING = frozenset({"sigmoid", "cdpo", "robust"})
SOFT_LABEL_LOSS_TYPES: tuple[str, ...] = ("sigmoid", "cdpo", "robust", "ipo", "rdpo")  # take ``strength``
_USES_STRENGTH = frozenset(SOFT_LABEL_LOSS_TYPES)

LengthsLike = torch.Tensor | Sequence[int] | Sequence[float]


def _as_tensor(name: str, x: torch.Tensor, shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor of log-probs, got dtype {x.dtype}")
    if x.shape != shape:
        raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {tuple(shape)} (same as policy_chosen_logps)")
    return x.to(device=device, dtype=dtype)


def _lengths(name: str, x: LengthsLike, shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=dtype)
    if t.shape != shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {tuple(shape)} (same as policy_chosen_logps)")
    t = t.detach().to(device=device, dtype=dtype)
    if t.numel() and not bool((t > 0).all()):
        raise ValueError(f"{name} must be strictly positive token counts")
    return t


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor | None,
    reference_rejected_logps: torch.Tensor | None,
    *,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_lengths: LengthsLike | None = None,
    rejected_lengths: LengthsLike | None = None,
    alpha: float = 0.0,
    gamma: float = 0.0,
    strength: torch.Tensor | Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-example preference losses and implicit rewards (see the module docstring).

    Args:
        policy_chosen_logps, policy_rejected_logps: summed completion log-probs under the
            policy, shape ``[batch]``; gradients flow through these.
        reference_chosen_logps, reference_rejected_logps: the same under the reference model;
            required except for ``simpo`` (ignored there, may be ``None``).
        beta: inverse temperature (> 0); for ``ipo`` the regulariser tau, target ``1/(2*beta)``.
        loss_type: one of ``LOSS_TYPES``.
        label_smoothing: label-flip rate eps for ``sigmoid``/``cdpo``/``robust``, ``0 <= eps < 0.5``.
        chosen_lengths, rejected_lengths: completion token counts, shape ``[batch]``; required by
            ``rdpo`` and ``simpo``, optional for ``ipo`` (turns on per-token averaging).
        alpha: R-DPO length coefficient (``rdpo`` only).
        gamma: SimPO target reward margin (``simpo`` only).
        strength: per-example probability in ``[0, 1]`` that the chosen response is preferred
            (soft labels), shape ``[batch]``; every loss type but ``simpo`` and ``hinge``.

    Returns:
        ``(losses, chosen_rewards, rejected_rewards)``, each shape ``[batch]``; losses are not
        reduced; rewards are detached.

    Raises:
        ValueError: unknown ``loss_type``, missing reference log-probs or lengths, bad shapes,
            or an out-of-range / unused hyperparameter (the message names the argument).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {LOSS_TYPES}")
    beta = float(beta)
    if not (beta > 0.0 and beta != float("inf")):
        raise ValueError(f"beta must be a positive finite number, got {beta}")

    if not isinstance(policy_chosen_logps, torch.Tensor) or not policy_chosen_logps.is_floating_point():
        raise ValueError("policy_chosen_logps must be a floating-point torch.Tensor")
    shape = policy_chosen_logps.shape
    device = policy_chosen_logps.device
    dtype = torch.promote_types(policy_chosen_logps.dtype, torch.float32)

    pc = policy_chosen_logps.to(dtype)
    pr = _as_tensor("policy_rejected_logps", policy_rejected_logps, shape, dtype, device)

    if loss_type in _NEEDS_REFERENCE:
        if reference_chosen_logps is None:
            raise ValueError(f"reference_chosen_logps is required for loss_type={loss_type!r}")
        if reference_rejected_logps is None:
            raise ValueError(f"reference_rejected_logps is required for loss_type={loss_type!r}")
        rc = _as_tensor("reference_chosen_logps", reference_chosen_logps, shape, dtype, device)
        rr = _as_tensor("reference_rejected_logps", reference_rejected_logps, shape, dtype, device)

    # --- hyperparameters a loss type does not use must be left at their neutral value
    eps = float(label_smoothing)
    if loss_type in _USES_LABEL_SMOOTHING:
        if not 0.0 <= eps < 0.5:
            raise ValueError(f"label_smoothing must lie in [0, 0.5) for loss_type={loss_type!r}, got {eps}")
    elif eps != 0.0:
        raise ValueError(f"label_smoothing is not used by loss_type={loss_type!r}; leave it at 0.0 (got {eps})")
    if loss_type != "rdpo" and float(alpha) != 0.0:
        raise ValueError(f"alpha is only used by loss_type='rdpo'; got alpha={alpha} with {loss_type!r}")
    if loss_type != "simpo" and float(gamma) != 0.0:
        raise ValueError(f"gamma is only used by loss_type='simpo'; got gamma={gamma} with {loss_type!r}")
    if strength is not None and loss_type not in _USES_STRENGTH:
        raise ValueError(f"strength (soft labels) has no {loss_type!r} form: it asks the chosen response to win by "
                         f"a fixed margin, which a tie cannot; use one of {', '.join(SOFT_LABEL_LOSS_TYPES)}, "
                         f"or hard labels (strength None)")
    s = None
    if strength is not None:
        s = strength if isinstance(strength, torch.Tensor) else torch.as_tensor(strength, dtype=dtype)
        if s.shape != shape:
            raise ValueError(f"strength has shape {tuple(s.shape)}, expected {tuple(shape)}")
        s = s.detach().to(device=device, dtype=dtype)
        if s.numel() and not bool(((s >= 0) & (s <= 1)).all()):
            raise ValueError("strength must lie in [0, 1] (probability that chosen is preferred)")

    # --- lengths
    if loss_type in ("rdpo", "simpo"):
        if chosen_lengths is None:
            raise ValueError(f"chosen_lengths is required for loss_type={loss_type!r}")
        if rejected_lengths is None:
            raise ValueError(f"rejected_lengths is required for loss_type={loss_type!r}")
    if loss_type == "ipo" and (chosen_lengths is None) != (rejected_lengths is None):
        missing = "chosen_lengths" if chosen_lengths is None else "rejected_lengths"
        raise ValueError(f"{missing} is missing: loss_type='ipo' needs both lengths (averaging) or neither")
    use_lengths = loss_type in ("rdpo", "simpo") or (loss_type == "ipo" and chosen_lengths is not None)
    if use_lengths:
        lw = _lengths("chosen_lengths", chosen_lengths, shape, dtype, device)
        ll = _lengths("rejected_lengths", rejected_lengths, shape, dtype, device)

    # --- implicit rewards (per-response scores whose difference the loss acts on, before beta)
    if loss_type == "simpo":
        chosen_scores, rejected_scores = pc / lw, pr / ll
    elif loss_type == "ipo" and use_lengths:
        chosen_scores, rejected_scores = (pc - rc) / lw, (pr - rr) / ll
    else:
        chosen_scores, rejected_scores = pc - rc, pr - rr
    h = chosen_scores - rejected_scores

    if loss_type in ("sigmoid", "cdpo"):
        z = beta * h
        if s is None:
            target = 1.0 - eps
            losses = -(target * F.logsigmoid(z) + eps * F.logsigmoid(-z))
        else:
            target = (1.0 - eps) * s + eps * (1.0 - s)
            losses = -(target * F.logsigmoid(z) + (1.0 - target) * F.logsigmoid(-z))
    elif loss_type == "robust":
        z = beta * h

        def robust(x: torch.Tensor) -> torch.Tensor:
            return ((1.0 - eps) * -F.logsigmoid(x) - eps * -F.logsigmoid(-x)) / (1.0 - 2.0 * eps)

        losses = robust(z) if s is None else s * robust(z) + (1.0 - s) * robust(-z)
    elif loss_type == "ipo":
        preference = 1.0 if s is None else s  # I in the paper's (h - (I - 1/2)/tau)^2
        losses = (h - (preference - 0.5) / beta) ** 2
    elif loss_type == "rdpo":
        x = beta * h + float(alpha) * (lw - ll)
        losses = -F.logsigmoid(x) if s is None else -(s * F.logsigmoid(x) + (1.0 - s) * F.logsigmoid(-x))
    elif loss_type == "simpo":
        losses = -F.logsigmoid(beta * h - float(gamma))
    else:  # hinge
        losses = torch.relu(1.0 - beta * h)

    chosen_rewards = (beta * chosen_scores).detach()
    rejected_rewards = (beta * rejected_scores).detach()
    return losses, chosen_rewards, rejected_rewards


def implicit_reward_accuracy(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> float:
    """Share of examples whose chosen reward is strictly greater than the rejected one.

    Ties count as wrong (at initialisation, when policy == reference, accuracy is 0, not 0.5
    or 1). Raises ``ValueError`` on mismatched shapes or an empty batch.
    """
    if chosen_rewards.shape != rejected_rewards.shape:
        raise ValueError(
            f"chosen_rewards shape {tuple(chosen_rewards.shape)} != rejected_rewards shape "
            f"{tuple(rejected_rewards.shape)}"
        )
    if chosen_rewards.numel() == 0:
        raise ValueError("chosen_rewards is empty: accuracy of an empty batch is undefined")
    return (chosen_rewards.detach() > rejected_rewards.detach()).float().mean().item()
