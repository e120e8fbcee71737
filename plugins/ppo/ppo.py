"""The ``ppo`` optimizer: RLHF's policy step (Ouyang et al. 2022; Ziegler et al. 2019).

Each step: sample responses to a batch of prompts, score them with the preference model
(a reward model or a rule), subtract a per-token KL penalty against the frozen reference,
estimate advantages with GAE from the critic's values, then run a few epochs of clipped
PPO updates over minibatches. PPO is not a supervised loop, so it has its own loop here,
built from the same parts as the engine: accelerate, AdamW, the schedule, gradient
clipping, the NaN guard, checkpoints that resume exactly, and ``ctx.log``.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
from omegaconf import OmegaConf

from alignkit.core import checkpoints
from alignkit.core.engine import TrainerConfig, save_model
from alignkit.core.errors import ConfigError, DataError, TrainingDiverged
from alignkit.core.interfaces import score_metrics
from alignkit.core.lm import pack
from alignkit.core.pipeline import StageContext
from alignkit.core.records_io import read_jsonl, write_jsonl
from alignkit.core.types import ModelSpec, StageResult
from alignkit.plugins.ppo import losses as L
from alignkit.plugins.ppo import sharding as S
from alignkit.plugins.ppo.actor_critic import (
    ActorCritic,
    critic_from_policy,
    critic_from_reward_model,
    reference_logprobs,
    value_head,
)
from alignkit.plugins.ppo.rollout import PromptPool, Rollout, encode_prompts, generate, micro_batch, response_mask

log = logging.getLogger("alignkit")


@dataclass
class PPOConfig:
    """Options of ``optimizer=ppo``. ``trainer.batch_size`` is the number of rollouts per step,
    ``trainer.max_steps`` the number of PPO steps, ``trainer.grad_accum`` the micro-batches
    each minibatch is split into."""

    # rollouts
    max_new_tokens: int = 48
    min_new_tokens: int = 0  # > 0: no end-of-sequence before this many tokens (fixed-length benchmarks)
    temperature: float = 1.0
    top_p: float = 1.0
    max_prompt_tokens: int = 0  # 0: trainer.max_length - max_new_tokens
    generation_batch_size: int = 0  # 0: the whole rollout batch in one generate call
    missing_eos_penalty: float = 0.0  # subtracted from the score of a response cut at max_new_tokens
    prompt_filter: Optional[str] = None  # package.module:function(prompt) -> bool, keeps matching prompts
    # reward and KL penalty
    kl_coef: float = 0.05
    adaptive_kl: bool = False  # Ziegler et al.'s controller: steer the KL towards target_kl
    target_kl: float = 6.0
    kl_horizon: int = 10000
    reward_scale: float = 1.0
    reward_clip: float = 0.0  # 0: no clipping; else scores are clipped to [-clip, clip]
    reward_normalize: bool = False  # divide scores by their running std (subtract the running mean)
    reference: str = "auto"  # auto | copy | adapter   (auto: adapter with trainer.lora, else copy)
    # under N processes: every_rank (each holds its own copy) | rank0 (one copy; the others' batches go to it)
    reward_placement: str = "every_rank"
    reference_placement: str = "every_rank"
    # critic and advantages
    critic: str = "separate"  # separate | shared  (shared: a value head on the policy)
    critic_init: str = "auto"  # auto | policy | reward_model   (auto: reward_model when the run has one)
    value_learning_rate: Optional[float] = None  # null: trainer.learning_rate
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    whiten_advantages: bool = True
    # update
    ppo_epochs: int = 4
    mini_batch_size: int = 0  # 0: the whole rollout batch
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    entropy_coef: float = 0.0
    max_approx_kl: float = 0.0  # 0: never stop early; else stop the step's update past this approx KL
    # reporting
    sample_every: int = 10  # write sample completions to samples.jsonl every N steps (0: never)
    samples_per_log: int = 4
    eval_prompts: int = 16  # held-out prompts scored before and after training (0: skip)
    eval_temperature: float = 0.0  # 0: greedy


def _options(config: Any) -> PPOConfig:
    data = OmegaConf.to_container(config, resolve=True) if not isinstance(config, dict) else dict(config)
    data.pop("name", None)
    o = PPOConfig(**data)
    choices = {"reference": ("auto", "copy", "adapter"), "critic": ("separate", "shared"),
               "critic_init": ("auto", "policy", "reward_model"), "reward_placement": S.PLACEMENTS,
               "reference_placement": S.PLACEMENTS}
    for key, allowed in choices.items():
        if getattr(o, key) not in allowed:
            raise ConfigError(f"optimizer.{key} must be one of {', '.join(allowed)}, not '{getattr(o, key)}'")
    positive = {"max_new_tokens": o.max_new_tokens, "ppo_epochs": o.ppo_epochs, "kl_horizon": o.kl_horizon}
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"optimizer.{key} must be at least 1, got {value}")
    if o.adaptive_kl and o.target_kl <= 0:
        raise ConfigError("optimizer.target_kl must be positive with optimizer.adaptive_kl=true")
    if not 0 < o.top_p <= 1 or o.temperature < 0 or o.cliprange <= 0:
        raise ConfigError("optimizer.top_p must be in (0, 1], temperature >= 0 and cliprange > 0")
    return o


def prompt_indices(count: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The prompts of PPO step ``step`` (0-based): positions ``step*B .. step*B+B-1`` of an endless
    stream of per-epoch shuffles, so a resumed run draws the same prompts at the same step."""
    out: list[int] = []
    position = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(position, count)
        order = list(range(count))
        random.Random(seed * 1000 + epoch).shuffle(order)
        take = order[offset:offset + batch_size - len(out)]
        out.extend(take)
        position += len(take)
    return out


class PPOOptimizer:
    """``optimizer=ppo``: clipped PPO with a critic, GAE and a KL penalty to the reference."""

    def __init__(self, config: Any) -> None:
        self.options = _options(config)

    # ---------------------------------------------------------------------------------
    def run(self, ctx: StageContext) -> StageResult:
        o = self.options
        settings = ctx.trainer_settings()
        if settings.batch_size < 1:
            raise ConfigError("trainer.batch_size (rollouts per PPO step) must be at least 1")
        scorer = (S.MainProcessScorer(ctx.preference_model) if o.reward_placement == "rank0"
                  else ctx.preference_model())
        self.generator = ctx.generator()
        loaded = ctx.load_model("policy")
        tokenizer = loaded.tokenizer
        pool, eval_pool = self._prompts(ctx, tokenizer, settings)

        engine = ctx.engine()  # accelerate, seeding, LoRA and gradient checkpointing as configured
        acc = engine.accelerator
        reference_mode = self._reference_mode(settings)
        reference = None
        # reference_placement=rank0: only the main process keeps the frozen copy and computes every
        # process's reference log-probs (_reference_logps)
        self._reference_on_main = reference_mode == "copy" and o.reference_placement == "rank0"
        if reference_mode == "copy" and (not self._reference_on_main or acc.is_main_process):
            reference = copy.deepcopy(loaded.model).eval().requires_grad_(False)
        policy = engine.prepare_model(loaded.model)
        model = ActorCritic(policy, **self._critic(ctx, policy))
        model.to(acc.device)
        if reference is not None:
            reference.to(acc.device)
        optimizer = self._optimizer(model, settings)
        from transformers import get_scheduler

        total = max(1, settings.max_steps)
        scheduler = get_scheduler(settings.lr_scheduler, optimizer, num_warmup_steps=int(settings.warmup_ratio * total),
                                  num_training_steps=total)
        model, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
        kl_ctl: L.FixedKLController = (L.AdaptiveKLController(o.kl_coef, o.target_kl, o.kl_horizon)
                                       if o.adaptive_kl else L.FixedKLController(o.kl_coef))
        moments = L.RunningMoments()

        checkpoint_dir = ctx.dir / "checkpoints"
        step, extra = 0, {}
        latest = checkpoints.resume_point(checkpoint_dir)  # verified; damaged ones are set aside
        if latest is not None:
            with checkpoints.loading(latest):
                acc.load_state(str(latest))
                state = checkpoints.read_state(latest)
                step = int(state["step"])
                kl_ctl.load_state_dict(state["kl_controller"])
                moments.load_state_dict(state["reward_moments"])
                extra = state.get("extra", {})
            print(f"alignkit: resuming stage '{ctx.name}' at step {step} from {latest}", file=sys.stderr)

        samples_file = ctx.dir / "samples.jsonl"
        samples = [r for r in read_jsonl(samples_file) if r.get("step", 0) <= step] if samples_file.exists() else []
        unwrap = lambda: acc.unwrap_model(model)  # noqa: E731
        if "eval_start" not in extra and eval_pool is not None:
            extra["eval_start"] = self._evaluate(unwrap().policy, tokenizer, eval_pool, scorer, settings)
            if acc.is_main_process:
                ctx.log(0, {f"eval/{k}": v for k, v in extra["eval_start"].items()})

        progress = None
        if settings.progress and acc.is_main_process:
            from tqdm.auto import tqdm

            progress = tqdm(total=total, initial=step, desc=ctx.name, unit="step", dynamic_ncols=True)
        final: dict[str, float] = {}
        try:
            while step < total and not ctx.run.stop_requested:
                metrics, rollout, scores, kl_seq = self._step(model, unwrap, reference, tokenizer, pool, scorer,
                                                              kl_ctl, moments, optimizer, settings, step, acc,
                                                              checkpoint_dir)
                scheduler.step()
                step += 1
                metrics["lr"] = scheduler.get_last_lr()[0]
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(reward=f"{metrics['reward/mean']:.3f}", kl=f"{metrics.get('rollout/kl', 0.0):.3f}", rollout_tok_s=f"{metrics['time/generated_tokens_per_second']:.0f}")
                if acc.is_main_process and (step % max(1, settings.log_every) == 0 or step == total):
                    ctx.log(step, metrics)
                final = metrics
                if o.sample_every and (step % o.sample_every == 0 or step == 1 or step == total):
                    samples.extend(self._sample_rows(step, rollout, scores, kl_seq))
                    if acc.is_main_process:
                        write_jsonl(samples_file, samples)
                if settings.checkpoint_every and step % settings.checkpoint_every == 0 and step < total:
                    self._save_checkpoint(acc, checkpoint_dir, step, kl_ctl, moments, extra, settings)
        finally:
            if progress is not None:
                progress.close()

        policy = unwrap().policy
        result = {f"train/{k}": v for k, v in final.items()}
        result["steps"] = step
        if eval_pool is not None:
            end = self._evaluate(policy, tokenizer, eval_pool, scorer, settings)
            if acc.is_main_process:
                ctx.log(step, {f"eval/{k}": v for k, v in end.items()})
            result.update({f"eval/{k}": v for k, v in end.items()})
            result.update({f"eval/start_{k}": v for k, v in extra["eval_start"].items()})
        if hasattr(policy, "merge_and_unload"):
            policy = policy.merge_and_unload()
        save_model(policy, tokenizer, ctx.dir / "model")
        result["data/prompts"] = len(pool)
        if getattr(scorer, "hits", None) is not None:  # a cached scorer (preference_model=judge)
            result["reward/cache_hits"] = scorer.hits
            result["reward/cache_misses"] = scorer.misses
        return StageResult(metrics=result, artifacts={"model": ctx.artifact(ctx.dir / "model")})

    # ---------------------------------------------------------------------------------
    def _step(self, model: Any, unwrap: Any, reference: Any, tokenizer: Any, pool: PromptPool, scorer: Any,
              kl_ctl: L.FixedKLController, moments: L.RunningMoments, optimizer: Any, settings: TrainerConfig,
              step: int, acc: Any, checkpoint_dir: Path) -> tuple[dict[str, float], Rollout, torch.Tensor, torch.Tensor]:
        o = self.options
        started = time.perf_counter()
        device = acc.device
        indices = prompt_indices(len(pool), settings.batch_size, settings.seed, step)
        # under N processes each samples, scores and trains on its own prompts (plugins/ppo/sharding.py)
        indices = S.local_slice(indices, "trainer.batch_size")
        n = len(indices)
        policy = unwrap().policy
        rollout, raw, truncated, scores = self._rollout(policy, tokenizer, pool, indices, scorer, moments, settings,
                                                        step)
        generate_seconds = rollout.seconds

        mask = response_mask(rollout.response_lengths).to(device)
        batch = pack(rollout.sequences).to(device)
        model.eval()  # no dropout: the sampled and the trained policy must be the same function
        with torch.no_grad():
            old = model(batch, mask, o.temperature if o.temperature > 0 else 1.0, with_values=True)
            ref_logps = self._reference_logps(policy, reference, rollout, mask,
                                              o.temperature if o.temperature > 0 else 1.0)
            kl = L.per_token_kl(old.logprobs, ref_logps, mask)
            rewards = L.penalised_rewards(scores.to(device), kl, mask, kl_ctl.value)
            advantages, returns = L.compute_gae(rewards, old.values, mask, o.gamma, o.lam)
            if o.whiten_advantages:
                advantages = S.whiten(advantages, mask)  # over every process's tokens
        stats = self._update(model, optimizer, rollout, mask, old, advantages, returns, settings, step, acc,
                             checkpoint_dir)

        local_kl = kl.sum(dim=1).cpu()
        kl_seq = S.gather_cat(local_kl)
        penalised = S.gather_cat(rewards.sum(dim=1).cpu())
        lengths = S.gather_cat(rollout.response_lengths)
        kl_ctl.update(float(kl_seq.mean()), len(kl_seq))
        elapsed = S.global_max(time.perf_counter() - started)
        generate_seconds = S.global_max(generate_seconds)
        tokens = int(lengths.sum())
        metrics = {
            "reward/mean": float(raw.mean()),
            "reward/std": float(raw.std()) if len(raw) > 1 else 0.0,
            "reward_with_kl/mean": float(penalised.mean()),
            "reward_with_kl/std": float(penalised.std()) if len(raw) > 1 else 0.0,
            "rollout/kl": float(kl_seq.mean()),
            "rollout/kl_coef": kl_ctl.value,
            # the critic's fit and mean value: this process's rows, averaged over the processes
            **S.mean_over_processes({"value/explained_variance": L.explained_variance(old.values, returns, mask),
                                     "value/mean": float(L.masked_mean(old.values, mask))}, float(mask.sum())),
            "rollout/response_length_mean": float(lengths.float().mean()),
            "rollout/responses_per_process": float(n),
            "rollout/truncated_fraction": float(truncated.float().mean()),
            "time/generate_seconds": generate_seconds,
            "time/step_seconds": elapsed,
            "time/generated_tokens_per_second": tokens / max(generate_seconds, 1e-9),
            **stats,
            **score_metrics(scorer),  # a composite's members, combined score, lambda (this process's batch)
        }
        return metrics, rollout, S.mine(raw, n), local_kl

    def _rollout(self, policy: Any, tokenizer: Any, pool: PromptPool, indices: list[int], scorer: Any,
                 moments: L.RunningMoments, settings: TrainerConfig,
                 step: int) -> tuple[Rollout, torch.Tensor, torch.Tensor, torch.Tensor]:
        """This process's responses to ``indices`` (``rollout.seconds``: the time generation took),
        then the whole step's raw scores and truncation flags gathered from every process, and
        this process's rows of the shaped scores (shaping sees the whole batch)."""
        o = self.options
        started = time.perf_counter()
        rollout = generate(policy, tokenizer, pool, indices, max_new_tokens=o.max_new_tokens,
                           temperature=o.temperature, top_p=o.top_p, seed=settings.seed * 100_003 + step,
                           batch_size=o.generation_batch_size, min_new_tokens=o.min_new_tokens,
                           first_chunk=S.first_chunk(len(indices), o.generation_batch_size),
                           generator=self.generator)
        rollout.seconds = time.perf_counter() - started
        raw = S.gather_cat(self._score(scorer, rollout, step))
        truncated = S.gather_cat(rollout.truncated)
        return rollout, raw, truncated, S.mine(self._shape_scores(raw, truncated, moments), len(indices))

    def _reference_logps(self, policy: Any, reference: Any, rollout: Rollout, mask: torch.Tensor,
                         temperature: float) -> torch.Tensor:
        """The frozen reference's log-probs of the rollout's response tokens, [B, T] like ``mask``:
        the policy with its adapter off (LoRA), this process's copy, or the main process's copy
        (``reference_placement=rank0``), which computes them for every process's rollouts."""
        if not getattr(self, "_reference_on_main", False):
            adapter = reference is None
            return reference_logprobs(policy if adapter else reference, rollout.sequences, mask, temperature,
                                      adapter=adapter)

        def on_main(sequences: list) -> torch.Tensor:
            lengths = torch.tensor([sum(s.scored) for s in sequences], dtype=torch.long)
            full = response_mask(lengths).to(mask.device)
            return reference_logprobs(reference, sequences, full, temperature, adapter=False)

        rows = S.computed_on_main(on_main, rollout.sequences)
        return rows[:, :mask.shape[1]].to(mask.device)

    @staticmethod
    def _score(scorer: Any, rollout: Rollout, step: int) -> torch.Tensor:
        """The preference model's scores of a rollout, [B] float32 on the CPU; a wrong count or a
        non-finite score stops the stage naming the response."""
        raw = scorer.score(rollout.prompts, rollout.responses)
        raw = torch.as_tensor(raw, dtype=torch.float32).detach().cpu().reshape(-1)
        if raw.numel() != len(rollout):
            raise ConfigError(f"the preference model returned {raw.numel()} scores for {len(rollout)} responses")
        if not torch.isfinite(raw).all():
            bad = int((~torch.isfinite(raw)).nonzero()[0])
            raise ConfigError(f"the preference model scored a response {float(raw[bad])} at step {step + 1} "
                              f"(response={rollout.responses[bad][:120]!r})")
        return raw

    def _shape_scores(self, raw: torch.Tensor, truncated: torch.Tensor, moments: L.RunningMoments) -> torch.Tensor:
        """Scale, penalise truncation, normalise and clip the preference model's scores."""
        o = self.options
        scores = raw * o.reward_scale - o.missing_eos_penalty * truncated.float()
        if o.reward_normalize:
            moments.update(scores)
            scores = (scores - moments.mean) / max(moments.std, 1e-6)
        if o.reward_clip > 0:
            scores = scores.clamp(-o.reward_clip, o.reward_clip)
        return scores

    def _update(self, model: Any, optimizer: Any, rollout: Rollout, mask: torch.Tensor, old: Any,
                advantages: torch.Tensor, returns: torch.Tensor, settings: TrainerConfig, step: int, acc: Any,
                checkpoint_dir: Path) -> dict[str, float]:
        """``ppo_epochs`` passes over shuffled minibatches; stops early past ``max_approx_kl``."""
        o = self.options
        world = S.layout()[0]
        micro = max(1, settings.grad_accum)
        temperature = o.temperature if o.temperature > 0 else 1.0
        records: list[dict[str, float]] = []
        entropies: list[float] = []
        optimizer_steps, stopped = 0, False
        for epoch, minibatch, parts in minibatches(len(rollout), o.mini_batch_size, micro, o.ppo_epochs,
                                                   settings.seed * 7919 + step):
            # normalised by every process's tokens; the gradient all-reduce averages the processes
            local = float(mask[minibatch].sum())
            weight_total = S.global_sum(local) / world
            mb_records = []
            for part in parts:
                rows, width, m, batch = micro_batch(rollout, mask, part)
                out = model(batch, m, temperature, with_values=True, with_entropy=epoch == 0)
                pg_loss, pg = L.policy_loss(out.logprobs, old.logprobs[rows, :width], advantages[rows, :width],
                                            m, o.cliprange)
                vf_loss, vf_clip = L.value_loss(out.values, old.values[rows, :width], returns[rows, :width], m,
                                                o.cliprange_value)
                loss = pg_loss + o.vf_coef * vf_loss
                if out.entropy is not None:
                    entropy = L.masked_mean(out.entropy, m)
                    entropies.append(float(entropy.detach()))
                    if o.entropy_coef:
                        loss = loss - o.entropy_coef * entropy
                stop_if_diverged(loss, "ppo", step, checkpoint_dir)
                acc.backward(loss * (float(m.sum()) / max(weight_total, 1.0)))
                mb_records.append({"loss/policy": float(pg_loss.detach()), "loss/value": float(vf_loss.detach()),
                                   "policy/clip_fraction": pg.clip_fraction, "policy/approx_kl": pg.approx_kl,
                                   "policy/ratio_mean": pg.ratio_mean, "value/clip_fraction": vf_clip,
                                   "_weight": float(m.sum())})
            record = S.mean_over_processes(_weighted(mb_records), local)
            records.append(record)
            stopped = step_unless_drifted(record, o.max_approx_kl, settings.max_grad_norm, acc, model, optimizer)
            if stopped:
                break
            optimizer_steps += 1
        out = mean_records(records)
        out["policy/entropy"] = S.mean_over_processes(
            {"e": sum(entropies) / len(entropies) if entropies else math.nan})["e"]
        out["update/optimizer_steps"] = optimizer_steps
        out["update/early_stopped"] = float(stopped)
        return out

    # ---------------------------------------------------------------------------------
    def _prompts(self, ctx: StageContext, tokenizer: Any, settings: TrainerConfig) -> tuple[PromptPool, Any]:
        o = self.options
        limit = o.max_prompt_tokens or settings.max_length - o.max_new_tokens
        if limit < 1:
            raise ConfigError(f"trainer.max_length ({settings.max_length}) leaves no room for prompts after "
                              f"optimizer.max_new_tokens ({o.max_new_tokens}); raise it or set optimizer.max_prompt_tokens")
        keep = None
        if o.prompt_filter:
            from alignkit.core.callables import load_callable

            keep = load_callable(o.prompt_filter, what="optimizer.prompt_filter")

        def load(split: str) -> PromptPool | None:
            rows = ctx.dataset("prompts", split)
            if rows is None or len(rows) == 0:
                return None
            prompts = [row["prompt"] for row in rows]
            if keep is not None:
                prompts = [p for p in prompts if keep(p)]
            pool, dropped = encode_prompts(tokenizer, prompts, limit)
            if dropped:
                log.warning("ppo: %d %s prompt(s) longer than %d tokens dropped", dropped, split, limit)
            return pool

        pool = load("train")
        if pool is None or len(pool) == 0:
            raise DataError(f"stage '{ctx.name}' has no usable prompts: configure data with prompts (or preference "
                            f"pairs or SFT conversations), check optimizer.prompt_filter and max_prompt_tokens ({limit})")
        eval_pool = load("eval") if o.eval_prompts > 0 else None
        if eval_pool is not None:
            eval_pool = PromptPool(eval_pool.messages[:o.eval_prompts], eval_pool.token_ids[:o.eval_prompts])
            eval_pool = eval_pool if len(eval_pool) else None
        return pool, eval_pool

    def _reference_mode(self, settings: TrainerConfig) -> str:
        mode = self.options.reference
        if mode == "auto":
            mode = "adapter" if settings.lora else "copy"
        if mode == "adapter" and not settings.lora:
            raise ConfigError("optimizer.reference=adapter needs trainer.lora=true")
        return mode

    def _critic(self, ctx: StageContext, policy: Any) -> dict[str, Any]:
        o = self.options
        from alignkit.plugins.ppo.actor_critic import _base

        base = _base(policy)
        if o.critic == "shared":
            return {"shared_head": value_head(base.config.hidden_size)}
        init = o.critic_init
        folder = ctx.find_artifact("reward_model")
        if init == "reward_model" and folder is None:
            raise ConfigError("optimizer.critic_init=reward_model needs an earlier stage that trains a reward model")
        if init in ("auto", "reward_model") and folder is not None:
            try:
                rm = ctx.load_model("reward", ModelSpec(str(folder))).model
            except Exception as exc:  # a reward model we cannot load as a transformers model
                if init == "reward_model":
                    raise
                log.warning("ppo: cannot load the reward model at %s as a critic (%s); the critic starts from the "
                            "policy", folder, exc)
            else:
                same_vocab = getattr(rm.config, "vocab_size", None) == getattr(base.config, "vocab_size", None)
                if hasattr(rm, "base_model_prefix") and same_vocab:
                    log.info("ppo: critic initialised from the reward model %s", folder)
                    return {"critic": critic_from_reward_model(rm)}
                if init == "reward_model":
                    raise ConfigError(f"the reward model at {folder} does not share the policy's vocabulary, so it "
                                      f"cannot initialise the critic; use optimizer.critic_init=policy")
                log.warning("ppo: the reward model does not share the policy's vocabulary; the critic starts "
                            "from the policy")
        return {"critic": critic_from_policy(policy)}

    def _optimizer(self, model: ActorCritic, settings: TrainerConfig) -> torch.optim.Optimizer:
        critic = model.critic if model.critic is not None else model.shared_head
        policy_params = [p for p in model.policy.parameters() if p.requires_grad]
        critic_params = [p for p in critic.parameters() if p.requires_grad]
        groups = [{"params": policy_params, "lr": settings.learning_rate},
                  {"params": critic_params, "lr": self.options.value_learning_rate or settings.learning_rate}]
        try:
            return torch.optim.AdamW(groups, weight_decay=settings.weight_decay, fused=True)
        except (RuntimeError, TypeError):
            return torch.optim.AdamW(groups, weight_decay=settings.weight_decay)

    def _save_checkpoint(self, acc: Any, folder: Path, step: int, kl_ctl: L.FixedKLController,
                         moments: L.RunningMoments, extra: dict, settings: TrainerConfig) -> Path:
        """Policy, critic, optimizer, schedule and RNG (accelerate) plus the KL controller and reward
        statistics, sealed by a manifest and renamed into place (core/checkpoints.py)."""
        state = {"step": step, "kl_controller": kl_ctl.state_dict(), "reward_moments": moments.state_dict(),
                 "extra": extra}
        return checkpoints.save(acc, folder, step, state, settings.keep_checkpoints)

    # ---------------------------------------------------------------------------------
    def _evaluate(self, policy: Any, tokenizer: Any, pool: PromptPool, scorer: Any,
                  settings: TrainerConfig) -> dict[str, float]:
        """Mean score on held-out prompts (greedy by default), before and after training."""
        o = self.options
        rollout = generate(policy, tokenizer, pool, list(range(len(pool))), max_new_tokens=o.max_new_tokens,
                           temperature=o.eval_temperature, top_p=1.0, seed=settings.seed,
                           batch_size=o.generation_batch_size, generator=self.generator)
        scores = torch.as_tensor(scorer.score(rollout.prompts, rollout.responses), dtype=torch.float32)
        return {"reward_mean": float(scores.mean()), "length_mean": float(rollout.response_lengths.float().mean()),
                "truncated_fraction": float(rollout.truncated.float().mean()), "prompts": len(pool),
                **score_metrics(scorer)}

    def _sample_rows(self, step: int, rollout: Rollout, scores: torch.Tensor, kl_seq: torch.Tensor) -> list[dict]:
        rows = []
        for i in range(min(self.options.samples_per_log, len(rollout))):
            prompt = rollout.prompts[i]
            text = prompt[-1]["content"] if prompt and isinstance(prompt[-1], dict) else str(prompt)
            rows.append({"step": step, "prompt": text, "response": rollout.responses[i],
                         "reward": round(float(scores[i]), 4), "kl": round(float(kl_seq[i]), 4),
                         "truncated": bool(rollout.truncated[i])})
        return rows


def stop_if_diverged(loss: Any, stage: str, step: int, checkpoint_dir: Path) -> None:
    """Raise ``TrainingDiverged`` (naming the checkpoint to resume from) when ``loss`` is not finite."""
    if torch.isfinite(loss.detach()):
        return
    newest = checkpoints.listing(checkpoint_dir)
    where = (f"the newest checkpoint is {newest[-1]}; rerun the same command to resume from it"
             if newest else "no checkpoint was written yet (trainer.checkpoint_every)")
    raise TrainingDiverged(
        f"stage {stage}: the loss became {float(loss.detach())} at step {step + 1}. Training stopped; "
        f"{where}. Lower trainer.learning_rate or raise optimizer.kl_coef.")


def minibatches(n: int, mini_batch_size: int, micro: int, epochs: int,
                seed: int) -> Iterator[tuple[int, list[int], list[list[int]]]]:
    """(epoch, minibatch rows, its micro-batches) for ``epochs`` shuffled passes over this
    process's ``n`` rollouts. ``mini_batch_size`` is the global minibatch (0: the whole batch),
    split evenly among the processes; a caller that stops early just leaves the loop."""
    world = S.layout()[0]
    size = mini_batch_size // world if 0 < mini_batch_size < n * world else n  # per process
    if 0 < mini_batch_size < n * world and (mini_batch_size % world or size < 1):
        raise ConfigError(f"optimizer.mini_batch_size ({mini_batch_size}) must divide evenly among the "
                          f"{world} processes")
    rng = random.Random(seed)
    for epoch in range(epochs):
        order = list(range(n))
        rng.shuffle(order)
        for start in range(0, n - size + 1, size):
            minibatch = order[start:start + size]
            yield epoch, minibatch, [minibatch[i::micro] for i in range(micro) if minibatch[i::micro]]


def step_unless_drifted(record: dict[str, float], max_approx_kl: float, max_grad_norm: float, acc: Any, model: Any,
                        optimizer: Any) -> bool:
    """One minibatch's optimizer step (gradient clipped, norm into ``record``), unless the policy
    already drifted past ``max_approx_kl``: then drop the gradient and return True (end the update)."""
    if max_approx_kl > 0 and record["policy/approx_kl"] > max_approx_kl:
        optimizer.zero_grad(set_to_none=True)
        return True
    if max_grad_norm and max_grad_norm > 0:
        record["grad_norm"] = float(acc.clip_grad_norm_(model.parameters(), max_grad_norm))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return False


def mean_records(records: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per key, the mean over the minibatch records that have it."""
    keys = {k for r in records for k in r}
    return {k: sum(r[k] for r in records if k in r) / sum(1 for r in records if k in r) for k in keys}


def _weighted(records: Sequence[dict[str, float]]) -> dict[str, float]:
    total = sum(r["_weight"] for r in records) or 1.0
    keys = [k for k in records[0] if k != "_weight"]
    return {k: sum(r[k] * r["_weight"] for r in records) / total for k in keys}
