"""From the preference model's scores to the scores the advantage estimator sees.

Scale, the missing-end-of-sequence penalty, DAPO's soft overlong punishment, running
normalisation and clipping, in that order, over the whole step's batch (every process's rows).
"""

from __future__ import annotations

from typing import Any

import torch

from alignkit.core.errors import ConfigError
from alignkit.core.running_moments import RunningMoments
from alignkit.plugins.rl.options import RLOptions


def score(scorer: Any, prompts: list[Any], responses: list[str], step: int) -> torch.Tensor:
    """The preference model's scores of the responses, [B] float32 on the CPU; a wrong count or a
    non-finite score stops the stage naming the response."""
    raw = scorer.score(prompts, responses)
    raw = torch.as_tensor(raw, dtype=torch.float32).detach().cpu().reshape(-1)
    if raw.numel() != len(responses):
        raise ConfigError(f"the preference model returned {raw.numel()} scores for {len(responses)} responses")
    if not torch.isfinite(raw).all():
        bad = int((~torch.isfinite(raw)).nonzero()[0])
        raise ConfigError(f"the preference model scored a response {float(raw[bad])} at step {step + 1} "
                          f"(response={responses[bad][:120]!r})")
    return raw


def overlong_penalty(lengths: torch.Tensor, max_new_tokens: int, buffer: int, penalty: float) -> torch.Tensor:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13): 0 up to ``max_new_tokens - buffer``
    tokens, then falling linearly to ``-penalty`` at ``max_new_tokens`` (``buffer=0``: all zeros)."""
    if buffer <= 0:
        return torch.zeros(lengths.shape, dtype=torch.float32)
    over = (lengths.float() - (max_new_tokens - buffer)).clamp(min=0.0)
    return -penalty * (over / buffer).clamp(max=1.0)


def shape_scores(o: RLOptions, raw: torch.Tensor, truncated: torch.Tensor, lengths: torch.Tensor,
                 moments: RunningMoments) -> torch.Tensor:
    """Scale, penalise truncation and overlong responses, normalise and clip the raw scores."""
    scores = raw * o.reward_scale - o.missing_eos_penalty * truncated.float()
    if o.overlong_buffer:
        scores = scores + overlong_penalty(lengths, o.max_new_tokens, o.overlong_buffer, o.overlong_penalty)
    if o.reward_normalize:
        moments.update(scores)
        scores = (scores - moments.mean) / max(moments.std, 1e-6)
    if o.reward_clip > 0:
        scores = scores.clamp(-o.reward_clip, o.reward_clip)
    return scores


def tied_groups(scores: torch.Tensor, k: int) -> torch.Tensor:
    """[G] bool: the groups of ``k`` consecutive scores that are all equal (no signal to compare)."""
    groups = scores.view(-1, k)
    return groups.max(dim=1).values == groups.min(dim=1).values
