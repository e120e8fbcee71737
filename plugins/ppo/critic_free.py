"""The ``rloo`` and ``grpo`` optimizers: PPO's loop without a value model.

Each step samples ``samples_per_prompt`` responses to each of ``trainer.batch_size /
samples_per_prompt`` prompts and scores them with the preference model. The baseline is the
other samples of the same prompt instead of a critic: RLOO subtracts their mean (leave-one-out,
Ahmadian et al. 2024), GRPO the group mean and divides by the group's std (Shao et al. 2024).
Every token of a response gets its advantage; the update is PPO's clipped surrogate. The KL to
the frozen reference is either subtracted from the score before the baseline (``kl_penalty=reward``,
RLOO's and PPO's way) or added to the loss per token (``kl_penalty=loss``, GRPO's way, k3 estimator).

Rollouts, scoring, the reference, checkpoints and resume, evaluation, samples and the metric
names are PPO's (``PPOOptimizer``); only the step and the update differ.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import OmegaConf

from alignkit.core.engine import TrainerConfig
from alignkit.core.errors import ConfigError
from alignkit.core.interfaces import score_metrics
from alignkit.core.lm import pack
from alignkit.core.pipeline import StageContext
from alignkit.core.types import StageResult
from alignkit.plugins.ppo import losses as L
from alignkit.plugins.ppo import sharding as S
from alignkit.plugins.ppo.actor_critic import ActorCritic
from alignkit.plugins.ppo.ppo import (
    PPOOptimizer,
    _weighted,
    mean_records,
    minibatches,
    prompt_indices,
    step_unless_drifted,
    stop_if_diverged,
)
from alignkit.plugins.ppo.rollout import PromptPool, Rollout, micro_batch, response_mask


@dataclass
class CriticFreeConfig:
    """Options shared by ``optimizer=rloo`` and ``optimizer=grpo``. ``trainer.batch_size`` is the
    number of responses per step (a multiple of ``samples_per_prompt``), ``trainer.max_steps`` the
    number of steps."""

    samples_per_prompt: int = 4  # k: responses per prompt, the group the baseline comes from
    # rollouts (as ppo)
    max_new_tokens: int = 48
    min_new_tokens: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    max_prompt_tokens: int = 0  # 0: trainer.max_length - max_new_tokens
    generation_batch_size: int = 0  # 0: the whole rollout batch in one generate call
    missing_eos_penalty: float = 0.0
    prompt_filter: Optional[str] = None
    # reward and KL to the reference
    kl_coef: float = 0.05
    kl_penalty: str = "reward"  # reward: score - kl_coef * KL(response), before the baseline | loss: per token
    kl_estimator: str = "k1"  # k1 | k2 | k3 (losses.kl_estimate); kl_penalty=loss needs k2 or k3
    adaptive_kl: bool = False
    target_kl: float = 6.0
    kl_horizon: int = 10000
    reward_scale: float = 1.0
    reward_clip: float = 0.0
    reward_normalize: bool = False
    reference: str = "auto"  # auto | copy | adapter | none (none: no KL at all, needs kl_coef=0)
    # under N processes: every_rank (each holds its own copy) | rank0 (one copy; the others' batches go to it)
    reward_placement: str = "every_rank"
    reference_placement: str = "every_rank"
    # update
    update_epochs: int = 1  # passes over the rollouts per step (1: exactly on-policy)
    mini_batch_size: int = 0  # 0: the whole rollout batch
    cliprange: float = 0.2
    entropy_coef: float = 0.0
    max_approx_kl: float = 0.0
    loss_aggregation: str = "token"  # token: mean over all response tokens | sequence: per response, then mean
    # reporting
    sample_every: int = 10
    samples_per_log: int = 4
    eval_prompts: int = 16
    eval_temperature: float = 0.0


@dataclass
class RLOOConfig(CriticFreeConfig):
    """Options of ``optimizer=rloo``."""

    normalize_advantages: bool = False  # whiten the advantages over the batch


@dataclass
class GRPOConfig(CriticFreeConfig):
    """Options of ``optimizer=grpo``: GRPO's defaults (the KL in the loss, k3) and reward scaling."""

    kl_coef: float = 0.04
    kl_penalty: str = "loss"
    kl_estimator: str = "k3"
    scale_rewards: bool = True  # divide by the group's std (false: Dr. GRPO's mean shift only)


def _options(config: Any, schema: type, name: str) -> CriticFreeConfig:
    data = OmegaConf.to_container(config, resolve=True) if not isinstance(config, dict) else dict(config)
    data.pop("name", None)
    o = schema(**data)
    choices = {"reference": ("auto", "copy", "adapter", "none"), "kl_penalty": ("reward", "loss"),
               "reward_placement": S.PLACEMENTS, "reference_placement": S.PLACEMENTS,
               "kl_estimator": L.KL_ESTIMATORS, "loss_aggregation": ("token", "sequence")}
    for key, allowed in choices.items():
        if getattr(o, key) not in allowed:
            raise ConfigError(f"optimizer.{key} must be one of {', '.join(allowed)}, not '{getattr(o, key)}'")
    if o.samples_per_prompt < 2:
        raise ConfigError(f"optimizer.samples_per_prompt must be at least 2 ({name} compares the samples of a "
                          f"prompt with each other), got {o.samples_per_prompt}")
    for key in ("max_new_tokens", "update_epochs", "kl_horizon"):
        if getattr(o, key) < 1:
            raise ConfigError(f"optimizer.{key} must be at least 1, got {getattr(o, key)}")
    if o.kl_penalty == "loss" and o.kl_estimator == "k1":
        raise ConfigError("optimizer.kl_penalty=loss needs kl_estimator=k3 or k2: the gradient of k1 in the loss is "
                          "a constant push on every log-prob, not the gradient of the KL")
    if o.reference == "none" and (o.kl_coef != 0 or o.adaptive_kl):
        raise ConfigError("optimizer.reference=none leaves nothing to measure the KL against: set "
                          "optimizer.kl_coef=0 (and adaptive_kl=false), or keep a reference")
    if not 0 < o.top_p <= 1 or o.temperature < 0 or o.cliprange <= 0:
        raise ConfigError("optimizer.top_p must be in (0, 1], temperature >= 0 and cliprange > 0")
    return o


class RLOOOptimizer(PPOOptimizer):
    """``optimizer=rloo``: leave-one-out baselines, no value model."""

    estimator = "rloo"
    schema: type = RLOOConfig

    def __init__(self, config: Any) -> None:
        self.options = _options(config, self.schema, self.estimator)

    def run(self, ctx: StageContext) -> StageResult:
        k = self.options.samples_per_prompt
        batch = ctx.trainer_settings().batch_size
        if batch < k or batch % k:
            raise ConfigError(f"trainer.batch_size ({batch}, responses per step) must be a multiple of "
                              f"optimizer.samples_per_prompt ({k})")
        return super().run(ctx)

    # PPO's hooks: no critic, one parameter group, an optional reference ---------------------
    def _critic(self, ctx: StageContext, policy: Any) -> dict[str, Any]:
        return {}

    def _optimizer(self, model: ActorCritic, settings: TrainerConfig) -> torch.optim.Optimizer:
        params = [p for p in model.policy.parameters() if p.requires_grad]
        try:
            return torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay, fused=True)
        except (RuntimeError, TypeError):
            return torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)

    def _reference_mode(self, settings: TrainerConfig) -> str:
        if self.options.reference == "none":
            self._mode = "none"
            return "none"
        self._mode = super()._reference_mode(settings)
        return self._mode

    def advantages(self, scores: torch.Tensor) -> torch.Tensor:
        """[N] scores, the k samples of each prompt side by side -> [N] advantages."""
        advantages = L.rloo_advantages(scores, self.options.samples_per_prompt)
        if self.options.normalize_advantages and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-4)
        return advantages

    def _group_rollout(self, policy: Any, tokenizer: Any, pool: PromptPool, scorer: Any, moments: L.RunningMoments,
                       settings: TrainerConfig, step: int) -> tuple[Rollout, torch.Tensor, torch.Tensor, torch.Tensor]:
        """This step's k samples of each of ``batch_size / k`` prompts, side by side, scored (as
        ``PPOOptimizer._rollout``). Under N processes each samples and scores its own prompts (their
        k samples together); the raw scores come back gathered from every process."""
        k = self.options.samples_per_prompt
        prompts = prompt_indices(len(pool), settings.batch_size // k, settings.seed, step)
        prompts = S.local_slice(prompts, "the prompts per step (trainer.batch_size / optimizer.samples_per_prompt)")
        indices = [i for i in prompts for _ in range(k)]
        return self._rollout(policy, tokenizer, pool, indices, scorer, moments, settings, step)

    # ---------------------------------------------------------------------------------
    def _step(self, model: Any, unwrap: Any, reference: Any, tokenizer: Any, pool: PromptPool, scorer: Any,
              kl_ctl: L.FixedKLController, moments: L.RunningMoments, optimizer: Any, settings: TrainerConfig,
              step: int, acc: Any, checkpoint_dir: Path) -> tuple[dict[str, float], Rollout, torch.Tensor, torch.Tensor]:
        o = self.options
        k = o.samples_per_prompt
        started = time.perf_counter()
        device = acc.device
        policy = unwrap().policy
        rollout, raw, truncated, scores = self._group_rollout(policy, tokenizer, pool, scorer, moments, settings, step)
        n = len(rollout)
        generate_seconds = rollout.seconds

        temperature = o.temperature if o.temperature > 0 else 1.0
        mask = response_mask(rollout.response_lengths).to(device)
        model.eval()
        with torch.no_grad():
            old = model(pack(rollout.sequences).to(device), mask, temperature, with_values=False)
            ref_logps = None
            kl_seq = torch.zeros(len(rollout), device=device)
            if self._mode != "none":
                ref_logps = self._reference_logps(policy, reference, rollout, mask, temperature)
                kl_seq = L.per_token_kl(old.logprobs, ref_logps, mask).sum(dim=1)  # k1: what PPO reports
            penalised = scores.to(device) - kl_ctl.value * kl_seq  # reported; what PPO's return would be
            returns = scores.to(device)
            if o.kl_penalty == "reward" and ref_logps is not None and kl_ctl.value:
                penalty = (L.kl_estimate(old.logprobs, ref_logps, o.kl_estimator) * mask).sum(dim=1)
                returns = penalised = scores.to(device) - kl_ctl.value * penalty
            all_advantages = self.advantages(S.gather_cat(returns.cpu()))
            advantages = S.mine(all_advantages, n).to(device)
        kl_loss = kl_ctl.value if o.kl_penalty == "loss" and ref_logps is not None else 0.0
        stats = self._update(model, optimizer, rollout, mask, old.logprobs, ref_logps, advantages, kl_loss,
                             settings, step, acc, checkpoint_dir)

        local_kl = kl_seq.cpu()
        kl_all, penalised = S.gather_cat(local_kl), S.gather_cat(penalised.cpu())
        lengths = S.gather_cat(rollout.response_lengths)
        kl_ctl.update(float(kl_all.mean()), len(kl_all))
        elapsed = S.global_max(time.perf_counter() - started)
        generate_seconds = S.global_max(generate_seconds)
        tokens = int(lengths.sum())
        groups = raw.view(-1, k)
        metrics = {
            "reward/mean": float(raw.mean()),
            "reward/std": float(raw.std()) if len(raw) > 1 else 0.0,
            "reward_with_kl/mean": float(penalised.mean()),
            "reward_with_kl/std": float(penalised.std()) if len(raw) > 1 else 0.0,
            "reward/zero_std_fraction": float((groups.max(dim=1).values == groups.min(dim=1).values).float().mean()),
            "advantage/abs_mean": float(all_advantages.abs().mean()),
            "rollout/kl_coef": kl_ctl.value,
            "rollout/response_length_mean": float(lengths.float().mean()),
            "rollout/responses_per_process": float(n),
            "rollout/truncated_fraction": float(truncated.float().mean()),
            "rollout/sequence_tokens": S.global_sum(sum(len(s.input_ids) for s in rollout.sequences)),
            "time/generate_seconds": generate_seconds,
            "time/step_seconds": elapsed,
            "time/generated_tokens_per_second": tokens / max(generate_seconds, 1e-9),
            **stats,
            **score_metrics(scorer),  # a composite's members, combined score, lambda (this process's batch)
        }
        if ref_logps is not None:
            metrics["rollout/kl"] = float(kl_all.mean())
        return metrics, rollout, S.mine(raw, n), local_kl

    def _update(self, model: Any, optimizer: Any, rollout: Rollout, mask: torch.Tensor, old_logps: torch.Tensor,
                ref_logps: torch.Tensor | None, advantages: torch.Tensor, kl_coef: float, settings: TrainerConfig,
                step: int, acc: Any, checkpoint_dir: Path) -> dict[str, float]:
        """``update_epochs`` passes over shuffled minibatches of the clipped surrogate."""
        o = self.options
        world = S.layout()[0]
        micro = max(1, settings.grad_accum)
        temperature = o.temperature if o.temperature > 0 else 1.0
        by_token = o.loss_aggregation == "token"
        records: list[dict[str, float]] = []
        entropies: list[float] = []
        optimizer_steps, stopped = 0, False
        for epoch, minibatch, parts in minibatches(len(rollout), o.mini_batch_size, micro, o.update_epochs,
                                                   settings.seed * 7919 + step):
            # normalised by the minibatch of every process; the gradient all-reduce averages the
            # processes, so each scales its share back up by their number
            local = float(mask[minibatch].sum()) if by_token else float(len(minibatch))
            total = S.global_sum(local) / world
            mb_records = []
            for part in parts:
                rows, width, m, batch = micro_batch(rollout, mask, part)
                out = model(batch, m, temperature, with_values=False, with_entropy=epoch == 0)
                pg_loss, pg = L.policy_gradient_loss(
                    out.logprobs, old_logps[rows, :width], advantages[rows], m, o.cliprange,
                    ref_logprobs=ref_logps[rows, :width] if ref_logps is not None and kl_coef else None,
                    kl_coef=kl_coef, kl_estimator=o.kl_estimator, aggregation=o.loss_aggregation)
                loss = pg_loss
                if out.entropy is not None:
                    entropy = L.masked_mean(out.entropy, m)
                    entropies.append(float(entropy.detach()))
                    if o.entropy_coef:
                        loss = loss - o.entropy_coef * entropy
                stop_if_diverged(loss, self.estimator, step, checkpoint_dir)
                weight = float(m.sum()) if by_token else float(len(part))
                acc.backward(loss * (weight / max(total, 1.0)))
                mb_records.append({"loss": float(loss.detach()), "loss/policy": float(pg_loss.detach()),
                                   "loss/kl": pg.kl * kl_coef, "policy/kl_in_loss": pg.kl,
                                   "policy/clip_fraction": pg.clip_fraction, "policy/approx_kl": pg.approx_kl,
                                   "policy/ratio_mean": pg.ratio_mean, "_weight": weight})
            record = S.mean_over_processes(_weighted(mb_records), local)
            records.append(record)
            stopped = step_unless_drifted(record, o.max_approx_kl, settings.max_grad_norm, acc, model, optimizer)
            if stopped:
                break
            optimizer_steps += 1
        out = mean_records(records)
        local_entropy = sum(entropies) / len(entropies) if entropies else math.nan
        if not kl_coef:
            out.pop("loss/kl", None)
            out.pop("policy/kl_in_loss", None)
        out["policy/entropy"] = S.mean_over_processes({"e": local_entropy})["e"]
        out["update/optimizer_steps"] = optimizer_steps
        out["update/early_stopped"] = float(stopped)
        return out


class GRPOOptimizer(RLOOOptimizer):
    """``optimizer=grpo``: group-normalised advantages, the KL in the loss, no value model."""

    estimator = "grpo"
    schema = GRPOConfig

    def advantages(self, scores: torch.Tensor) -> torch.Tensor:
        return L.grpo_advantages(scores, self.options.samples_per_prompt, scale=self.options.scale_rewards)
