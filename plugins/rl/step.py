"""One step of a ratio-based algorithm (PPO, GRPO, RLOO, DAPO, GSPO, REINFORCE++, ...).

Sample and score (``Sampler``), the sampling policy's log-probs (and the critic's values), the
reference's, the KL penalty in the reward (or, ``kl_penalty=loss``, handed to the policy loss),
the registered advantage estimator, then the update (update.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alignkit.core.engine import TrainerConfig
from alignkit.core.lm import pack
from alignkit.core.rl import AdvantageInputs, masked_mean
from alignkit.core.running_moments import RunningMoments
from alignkit.plugins.rl import sharding as S
from alignkit.plugins.rl.critic import explained_variance
from alignkit.plugins.rl.kl import FixedKLController, per_token_kl
from alignkit.plugins.rl.options import RLOptions
from alignkit.plugins.rl.policy_losses import kl_estimate
from alignkit.plugins.rl.reference import Reference
from alignkit.plugins.rl.reporting import rollout_metrics, sequence_tokens
from alignkit.plugins.rl.rollout import Rollout, response_mask
from alignkit.plugins.rl.sampling import Sampler
from alignkit.plugins.rl.update import UpdateBatch, update


@dataclass
class Training:
    """Everything a step works with, set up once by the loop (loop.py)."""

    o: RLOptions
    settings: TrainerConfig
    stage: str
    checkpoint_dir: Path
    acc: Any  # accelerate's Accelerator
    model: Any  # the prepared ActorCritic
    optimizer: Any
    tokenizer: Any
    sampler: Sampler
    reference: Reference
    estimator: Any  # AdvantageEstimatorEntry
    loss: Any  # PolicyLossEntry
    kl_ctl: FixedKLController
    moments: RunningMoments
    diversity: Any = None  # DivPO's diversity measure (optimizer.pair_selection=divpo), texts -> [float]

    def policy(self) -> Any:
        return self.acc.unwrap_model(self.model).policy


@dataclass
class StepResult:
    """A step's metrics and what ``samples.jsonl`` shows of it (this process's rows)."""

    metrics: dict[str, float]
    rollout: Rollout
    scores: torch.Tensor
    kl: torch.Tensor


def ratio_step(t: Training, step: int) -> StepResult:
    o, device = t.o, t.acc.device
    started = time.perf_counter()
    policy = t.policy()
    batch = t.sampler.sample(policy, t.tokenizer, step, t.moments)
    rollout = batch.rollout
    critic = t.estimator.needs_critic
    mask = response_mask(rollout.response_lengths).to(device)
    scores = batch.scores.to(device)
    t.model.eval()  # no dropout: the sampled and the trained policy must be the same function
    with torch.no_grad():
        old = t.model(pack(rollout.sequences).to(device), mask, o.sampling_temperature, with_values=critic)
        ref = t.reference.logprobs(policy, rollout, mask, o.sampling_temperature) if t.reference.exists else None
        coef = t.kl_ctl.value
        k1 = per_token_kl(old.logprobs, ref, mask) if ref is not None else torch.zeros_like(mask)
        in_reward = o.kl_penalty == "reward" and ref is not None
        penalty = coef * (kl_estimate(old.logprobs, ref, o.kl_estimator) * mask if in_reward else k1)
        options = o.part_options(kl_coef=coef)
        estimated = t.estimator.estimate(AdvantageInputs(
            scores=scores, mask=mask, kl_penalty=penalty if in_reward else torch.zeros_like(mask),
            group_size=o.samples_per_prompt, values=old.values if critic else None, options=options,
            reducer=S.ProcessReducer()))
    stats = update(o, t.loss.loss, options, t.model, t.optimizer,
                   UpdateBatch(rollout, mask, old.logprobs, estimated.advantages, ref,
                               old.values if critic else None, estimated.returns),
                   t.settings, step, t.acc, t.stage, t.checkpoint_dir)

    local_kl = k1.sum(dim=1).cpu()
    kl_all = S.gather_cat(local_kl)
    penalised = S.gather_cat((scores - penalty.sum(dim=1)).cpu())  # the reward with its KL penalty (reported)
    t.kl_ctl.update(float(kl_all.mean()), len(kl_all))
    metrics = {
        "reward_with_kl/mean": float(penalised.mean()),
        "reward_with_kl/std": float(penalised.std()) if len(penalised) > 1 else 0.0,
        "rollout/kl_coef": t.kl_ctl.value,
        **rollout_metrics(o, batch, t.sampler.scorer, started),
        **stats,
    }
    if ref is not None:
        metrics["rollout/kl"] = float(kl_all.mean())
    if critic:  # the critic's fit and mean value: this process's rows, averaged over the processes
        metrics.update(S.mean_over_processes(
            {"value/explained_variance": explained_variance(old.values, estimated.returns, mask),
             "value/mean": float(masked_mean(old.values, mask))}, float(mask.sum())))
    else:
        per_row = (estimated.advantages.abs() * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        metrics["advantage/abs_mean"] = float(S.gather_cat(per_row.cpu()).mean())
        metrics["rollout/sequence_tokens"] = sequence_tokens(rollout)
    return StepResult(metrics, rollout, S.mine(batch.raw, len(rollout)), local_kl)
