"""A step's scored rollouts: prompts, responses from the run's generation backend, scores.

Each of ``trainer.batch_size / samples_per_prompt`` prompts gets ``samples_per_prompt``
responses, side by side. Under N processes each samples and scores its own prompts (whole
groups); the raw scores are gathered so shaping sees the whole batch. With
``optimizer.dynamic_sampling`` (DAPO) a group whose scores are all equal carries no signal:
it is dropped and more prompts are sampled, for at most ``dynamic_sampling_rounds`` extra
rounds, to refill the batch (what is still missing then is filled with dropped groups).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from alignkit.core.engine import TrainerConfig
from alignkit.core.errors import ConfigError
from alignkit.core.running_moments import RunningMoments
from alignkit.plugins.rl import sharding as S
from alignkit.plugins.rl.options import RLOptions
from alignkit.plugins.rl.prompts import prompt_indices
from alignkit.plugins.rl.rollout import PromptPool, Rollout, concat, generate, select
from alignkit.plugins.rl.shaping import score, shape_scores, tied_groups


@dataclass
class ScoredBatch:
    """This process's rollout and the step's scores: ``raw`` and ``truncated`` for the whole
    batch (every process's rows), ``scores`` this process's shaped ones."""

    rollout: Rollout
    raw: torch.Tensor
    truncated: torch.Tensor
    scores: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Sampler:
    """Samples and scores the rollouts of a step."""

    o: RLOptions
    settings: TrainerConfig
    pool: PromptPool
    scorer: Any
    generator: Any

    def __post_init__(self) -> None:
        k, batch = self.o.samples_per_prompt, self.settings.batch_size
        if batch < k or batch % k:
            raise ConfigError(f"trainer.batch_size ({batch}, responses per step) must be a multiple of "
                              f"optimizer.samples_per_prompt ({k})")

    def round(self, policy: Any, tokenizer: Any, step: int, number: int) -> tuple[Rollout, torch.Tensor]:
        """Round ``number`` (0: the step's own prompts) of this process's prompts, k responses
        each, and their raw scores."""
        o, s = self.o, self.settings
        k = o.samples_per_prompt
        what = ("trainer.batch_size" if k == 1 else
                "the prompts per step (trainer.batch_size / optimizer.samples_per_prompt)")
        prompts = prompt_indices(len(self.pool), s.batch_size // k, s.seed + 7919 * number, step)
        indices = [i for i in S.local_slice(prompts, what) for _ in range(k)]
        started = time.perf_counter()
        rollout = generate(policy, tokenizer, self.pool, indices, max_new_tokens=o.max_new_tokens,
                           temperature=o.temperature, top_p=o.top_p,
                           seed=s.seed * 100_003 + step + 1_000_033 * number, batch_size=o.generation_batch_size,
                           min_new_tokens=o.min_new_tokens,
                           first_chunk=S.first_chunk(len(indices), o.generation_batch_size), generator=self.generator)
        rollout.seconds = time.perf_counter() - started
        return rollout, score(self.scorer, rollout.prompts, rollout.responses, step)

    def sample(self, policy: Any, tokenizer: Any, step: int, moments: RunningMoments) -> ScoredBatch:
        rollout, raw = self.round(policy, tokenizer, step, 0)
        metrics: dict[str, float] = {}
        if self.o.dynamic_sampling:
            rollout, raw, metrics = self._refill(policy, tokenizer, step, rollout, raw)
        raw_all, truncated = S.gather_cat(raw), S.gather_cat(rollout.truncated)
        lengths = S.gather_cat(rollout.response_lengths)
        scores = shape_scores(self.o, raw_all, truncated, lengths, moments)
        return ScoredBatch(rollout, raw_all, truncated, S.mine(scores, len(rollout)), metrics)

    def _refill(self, policy: Any, tokenizer: Any, step: int, rollout: Rollout,
                raw: torch.Tensor) -> tuple[Rollout, torch.Tensor, dict[str, float]]:
        """Keep the groups whose scores differ; sample more rounds until every process has as
        many as it started with (or the rounds run out: then dropped groups fill the gap)."""
        k = self.o.samples_per_prompt
        target = len(rollout) // k
        kept: list[tuple[Rollout, torch.Tensor]] = []
        dropped: list[tuple[Rollout, torch.Tensor]] = []
        dropped_count, rounds, count, first = 0, 0, 0, -1
        seconds = 0.0
        while True:
            seconds += rollout.seconds
            ties = tied_groups(raw, k)
            for g in range(len(ties)):
                rows = range(g * k, g * k + k)
                (dropped if ties[g] else kept).append((select(rollout, rows), raw[g * k:g * k + k]))
            dropped_count += int(ties.sum())
            count = min(len(kept), target)
            first = count if first < 0 else first
            if S.global_max(float(target - count)) <= 0 or rounds >= self.o.dynamic_sampling_rounds:
                break
            rounds += 1
            rollout, raw = self.round(policy, tokenizer, step, rounds)
        chosen = kept[:target] + dropped[:target - count]
        out = concat([r for r, _ in chosen])
        out.seconds = seconds
        metrics = {"dynamic_sampling/dropped_groups": S.global_sum(dropped_count),
                   "dynamic_sampling/extra_rounds": float(rounds),
                   "dynamic_sampling/refilled_groups": S.global_sum(count - first),
                   "dynamic_sampling/tied_groups_kept": S.global_sum(target - count)}
        return out, torch.cat([r for _, r in chosen]), metrics
