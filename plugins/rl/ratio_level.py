"""``optimizer.ratio_level=sequence``: one importance ratio per response, as TRL's RLOOTrainer.

TRL 1.16's RLOO clips ``exp(log pi(y) - log pi_old(y))`` of the whole response (its log-probs
summed, not averaged as GSPO does) and takes the mean of the responses' losses. The RLOO paper
(Ahmadian et al. 2024) is REINFORCE: it has no ratio at all, i.e. one update per rollout, where
both levels give the same value (ratio 1) and differ only in how tokens are weighted.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from alignkit.core.rl import PolicyLossInputs, PolicyLossOutputs


def sequence_level(loss: Callable[[PolicyLossInputs], PolicyLossOutputs]) -> Callable[[PolicyLossInputs], PolicyLossOutputs]:
    """A token-ratio policy loss (``ppo_clip``, ``reinforce``) applied once per response: each row
    becomes one "token" with the response's summed log-probs and its advantage, and the row's
    loss goes on its first response token. Aggregate with ``sequence_sum_token_mean`` (the mean
    over responses)."""

    def per_sequence(inputs: PolicyLossInputs) -> PolicyLossOutputs:
        mask = inputs.mask.to(inputs.logprobs.dtype)
        lengths = mask.sum(dim=1, keepdim=True).clamp(min=1)
        one = torch.ones_like(lengths)
        summed = PolicyLossInputs(
            logprobs=(inputs.logprobs * mask).sum(dim=1, keepdim=True),
            old_logprobs=(inputs.old_logprobs * mask).sum(dim=1, keepdim=True),
            advantages=(inputs.advantages * mask).sum(dim=1, keepdim=True) / lengths,
            mask=one, ref_logprobs=None, options=_without_kl(inputs.options))
        out = loss(summed)
        rest = torch.zeros_like(inputs.logprobs[:, 1:])
        return PolicyLossOutputs(per_token=torch.cat([out.per_token, rest], dim=1), metrics=out.metrics)

    return per_sequence


def _without_kl(options: Any) -> dict[str, Any]:
    return {**options, "kl_in_loss": False}
