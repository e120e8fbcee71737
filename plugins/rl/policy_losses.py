"""Policy losses: what on-policy RL minimises, given the advantages.

Each loss is a pure ``PolicyLossFn`` (``alignkit.core.rl``): the policy's log-probs now (with
the gradient), when sampled and under the reference, the advantages and the mask of one
micro-batch in; each token's loss term [b, t] and metrics out. The loop aggregates the terms
(``optimizer.loss_aggregation``, ``core.rl.aggregate``), so one formula serves TRL's
``loss_type`` grpo, bnpo, dr_grpo and dapo. Pinned to hand-computed values and to TRL 1.16 in
tests/plugins/rl/test_policy_losses.py.
"""

from __future__ import annotations

import torch

from alignkit.core.preference_losses import LOSS_TYPES, dpo_loss, implicit_reward_accuracy
from alignkit.core.rl import PolicyLossInputs, PolicyLossOutputs, masked_mean

DEFAULT_OPTIONS = {
    "cliprange": 0.2,  # PPO's epsilon: the ratio is clipped to [1 - clip_low, 1 + clip_high]
    "clip_low": None,  # None: cliprange
    "clip_high": None,  # None: cliprange (DAPO's clip-higher sets it above clip_low, e.g. 0.28)
    "kl_in_loss": False,  # add kl_coef * KL(policy || reference) to each token's term
    "kl_coef": 0.0,
    "kl_estimator": "k3",
    # dpo_pairwise (plugins/dpo's options)
    "beta": 0.1,
    "loss_type": "sigmoid",
    "label_smoothing": 0.0,
    "alpha": 0.0,
    "gamma": 0.0,
}
"""The options the losses read, with the values they take when the optimizer does not set them."""


def _option(inputs: PolicyLossInputs, key: str):
    value = inputs.options.get(key)
    return DEFAULT_OPTIONS[key] if value is None else value


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


def clip_range(inputs: PolicyLossInputs) -> tuple[float, float]:
    """(low, high): the ratio is clipped to [1 - low, 1 + high]; each defaults to ``cliprange``."""
    base = _option(inputs, "cliprange")
    low, high = inputs.options.get("clip_low"), inputs.options.get("clip_high")
    return float(base if low is None else low), float(base if high is None else high)


def _kl_in_loss(inputs: PolicyLossInputs) -> torch.Tensor | None:
    """The per-token KL to the reference when the loss carries it, else None."""
    if inputs.ref_logprobs is None or not _option(inputs, "kl_in_loss") or not _option(inputs, "kl_coef"):
        return None
    return kl_estimate(inputs.logprobs, inputs.ref_logprobs, _option(inputs, "kl_estimator"))


def _masked(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.bool(), per_token, torch.zeros_like(per_token))


def _clipped_surrogate(inputs: PolicyLossInputs, ratio: torch.Tensor, log_ratio: torch.Tensor) -> PolicyLossOutputs:
    """``max(-A r, -A clip(r, 1 - low, 1 + high)) + kl_coef * kl_t`` per token, and its metrics."""
    mask = inputs.mask.to(inputs.logprobs.dtype)
    advantages = inputs.advantages.detach().to(inputs.logprobs.dtype)
    low, high = clip_range(inputs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - low, 1.0 + high)
    per_token = torch.maximum(unclipped, clipped)
    kl = _kl_in_loss(inputs)
    if kl is not None:
        per_token = per_token + _option(inputs, "kl_coef") * kl
    with torch.no_grad():
        metrics = {
            "clip_fraction": float(masked_mean((clipped > unclipped).to(mask.dtype), mask)),
            "approx_kl": float(masked_mean((ratio - 1.0) - log_ratio, mask)),
            "ratio_mean": float(masked_mean(ratio, mask)),
            "kl": float(masked_mean(kl, mask)) if kl is not None else 0.0,
        }
    return PolicyLossOutputs(per_token=_masked(per_token, mask), metrics=metrics)


def _token_log_ratio(inputs: PolicyLossInputs) -> torch.Tensor:
    mask = inputs.mask.to(inputs.logprobs.dtype)
    return (inputs.logprobs - inputs.old_logprobs.detach()) * mask


def ppo_clip(inputs: PolicyLossInputs) -> PolicyLossOutputs:
    """PPO's clipped surrogate (Schulman et al. 2017) with the token's ratio
    ``r = exp(logprobs - old_logprobs)``, clipped to [1 - clip_low, 1 + clip_high] (DAPO's
    clip-higher, Yu et al. 2025, when clip_high > clip_low), plus ``kl_coef * kl_t`` when the
    KL sits in the loss (``kl_in_loss``; GRPO's k3). ``approx_kl`` is the k3 estimate of
    KL(old || new), always >= 0."""
    log_ratio = _token_log_ratio(inputs)
    return _clipped_surrogate(inputs, torch.exp(log_ratio), log_ratio)


def gspo(inputs: PolicyLossInputs) -> PolicyLossOutputs:
    """GSPO (Zheng et al. 2025, arXiv:2507.18071): the clipped surrogate with one importance ratio
    per response, ``s_i = exp(mean over its tokens of log(pi / pi_old))``, put on each token as
    ``s_i,t = sg[s_i] * pi(y_t) / sg[pi(y_t)]``: the value is s_i, the gradient flows through each
    token's log-prob (the paper's GSPO-token; TRL's ``importance_sampling_level="sequence"``)."""
    mask = inputs.mask.to(inputs.logprobs.dtype)
    log_ratio = _token_log_ratio(inputs)
    sequence = log_ratio.sum(dim=1, keepdim=True) / mask.sum(dim=1, keepdim=True).clamp(min=1)
    ratio = torch.exp(inputs.logprobs - inputs.logprobs.detach() + sequence.detach())
    return _clipped_surrogate(inputs, ratio, log_ratio)


def reinforce(inputs: PolicyLossInputs) -> PolicyLossOutputs:
    """REINFORCE (Williams 1992): ``-A * log pi(y_t)`` per token, no ratio and no clipping (exactly
    on-policy: one update per rollout), plus ``kl_coef * kl_t`` when the KL sits in the loss.
    The ratio metrics still describe how far the policy moved from the sampler."""
    mask = inputs.mask.to(inputs.logprobs.dtype)
    advantages = inputs.advantages.detach().to(inputs.logprobs.dtype)
    per_token = -advantages * inputs.logprobs
    kl = _kl_in_loss(inputs)
    if kl is not None:
        per_token = per_token + _option(inputs, "kl_coef") * kl
    log_ratio = _token_log_ratio(inputs)
    with torch.no_grad():
        ratio = torch.exp(log_ratio)
        metrics = {
            "clip_fraction": 0.0,
            "approx_kl": float(masked_mean((ratio - 1.0) - log_ratio, mask)),
            "ratio_mean": float(masked_mean(ratio, mask)),
            "kl": float(masked_mean(kl, mask)) if kl is not None else 0.0,
        }
    return PolicyLossOutputs(per_token=_masked(per_token, mask), metrics=metrics)


def dpo_pairwise(inputs: PolicyLossInputs) -> PolicyLossOutputs:
    """Online DPO's loss (Guo et al. 2024): rows (2j, 2j+1) are pair j, chosen (advantage +1)
    then rejected (-1), as ``best_vs_worst`` marks them and the loop orders them. Each pair's DPO
    loss (``loss_type``, ``beta``, ``label_smoothing``, ``alpha``, ``gamma``; see
    ``core/preference_losses.py``) on the summed response log-probs goes on the chosen row's first
    response token; a pair whose rows are both 0 is a stand-in that weighs nothing (a process
    without pairs still joins the gradient all-reduce). Needs the reference unless ``simpo``."""
    logprobs, mask = inputs.logprobs, inputs.mask.to(inputs.logprobs.dtype)
    if logprobs.shape[0] % 2:
        raise ValueError(f"dpo_pairwise: {logprobs.shape[0]} rows are not pairs (chosen, rejected)")
    loss_type = _option(inputs, "loss_type")
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"dpo_pairwise: loss_type must be one of {', '.join(LOSS_TYPES)}, not '{loss_type}'")
    if inputs.ref_logprobs is None and loss_type != "simpo":
        raise ValueError(f"dpo_pairwise: loss_type={loss_type} compares with the reference's log-probs, and there "
                         "is no reference; keep one or use loss_type=simpo")
    sign = torch.sign((inputs.advantages.detach() * mask).sum(dim=1))
    chosen_sign, rejected_sign = sign[0::2], sign[1::2]
    real = (chosen_sign > 0) & (rejected_sign < 0)
    if bool(((chosen_sign != 0) | (rejected_sign != 0)).logical_and(~real).any()):
        raise ValueError("dpo_pairwise: rows 2j and 2j+1 must be a chosen response (advantage +1) then a rejected "
                         "one (-1), or both 0 for a stand-in pair")
    logps, lengths = (logprobs * mask).sum(dim=1), mask.sum(dim=1)
    ref = (inputs.ref_logprobs.detach() * mask).sum(dim=1) if inputs.ref_logprobs is not None else None
    losses, chosen_rewards, rejected_rewards = dpo_loss(
        logps[0::2], logps[1::2], ref[0::2] if ref is not None else None, ref[1::2] if ref is not None else None,
        beta=_option(inputs, "beta"), loss_type=loss_type, label_smoothing=_option(inputs, "label_smoothing"),
        chosen_lengths=lengths[0::2].clamp(min=1), rejected_lengths=lengths[1::2].clamp(min=1),
        alpha=_option(inputs, "alpha"), gamma=_option(inputs, "gamma"))
    chosen_rows = torch.arange(0, logprobs.shape[0], 2, device=logprobs.device)
    first = first_index(mask[0::2])
    per_token = torch.zeros_like(logprobs).index_put(
        (chosen_rows, first), (losses * real.to(losses.dtype)).to(logprobs.dtype))
    with torch.no_grad():
        count = int(real.sum())
        metrics = {"pairs": float(count)}
        if count:
            for key, value in (("loss", losses), ("rewards/chosen", chosen_rewards),
                               ("rewards/rejected", rejected_rewards),
                               ("rewards/margin", chosen_rewards - rejected_rewards),
                               ("logps/chosen", logps[0::2]), ("logps/rejected", logps[1::2]),
                               ("length/chosen", lengths[0::2]), ("length/rejected", lengths[1::2])):
                metrics[key] = float(value.detach()[real].float().mean())
            metrics["rewards/accuracy"] = implicit_reward_accuracy(chosen_rewards[real], rejected_rewards[real])
    return PolicyLossOutputs(per_token=per_token, metrics=metrics)


def first_index(mask: torch.Tensor) -> torch.Tensor:
    """[B] the position of each row's first response token (0 for a row without one)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    big = torch.full_like(positions, mask.shape[1])
    first = torch.where(mask.bool(), positions, big).min(dim=1).values
    return torch.where(first == mask.shape[1], torch.zeros_like(first), first)
