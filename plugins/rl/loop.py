"""The RL loop every on-policy algorithm shares (``optimizer=ppo``, ``grpo``, ``rloo``,
``online_dpo``, ``dr_grpo``, ``dapo``, ``gspo``, ``reinforce_pp``, and any composition).

Each step: prompts -> rollouts with the run's generation backend -> scores from the preference
model -> reward shaping -> the registered advantage estimator (``optimizer.advantage``) ->
the registered policy loss (``optimizer.policy_loss``, + the critic's value loss when the
estimator needs one) -> update epochs over minibatches. The engine's parts do the rest
(core/engine.py): accelerate, LoRA and gradient checkpointing, AdamW, the schedule, the
progress bar, checkpoints that resume exactly and the NaN guard.
"""

from __future__ import annotations

from typing import Any

import torch

from alignkit.core import checkpoints
from alignkit.core.engine import make_optimizer, make_scheduler, progress_bar, resume_state, save_model
from alignkit.core.errors import ConfigError
from alignkit.core.interfaces import CacheCounters, capability
from alignkit.core.pipeline import StageContext
from alignkit.core.rl import AdvantageInputs
from alignkit.core.records_io import read_jsonl, write_jsonl
from alignkit.core.running_moments import RunningMoments
from alignkit.core.types import StageResult
from alignkit.plugins.rl import sharding as S
from alignkit.plugins.rl.actor_critic import ActorCritic
from alignkit.plugins.rl.critic import build_critic, parameter_groups
from alignkit.plugins.rl.kl import controller
from alignkit.plugins.rl.options import RLOptions, parse
from alignkit.plugins.rl.pairwise import pairwise_step
from alignkit.plugins.rl.prompts import load_prompts
from alignkit.plugins.rl.reference import Reference
from alignkit.plugins.rl.reporting import evaluate, sample_rows
from alignkit.plugins.rl.sampling import Sampler
from alignkit.plugins.rl.step import Training, ratio_step


def parts(registry: Any, o: RLOptions) -> tuple[Any, Any]:
    """The configured advantage estimator and policy loss (an unknown name: the registry's
    did-you-mean error), checked to fit together."""
    estimator = registry.get("advantage_estimator", o.advantage)
    loss = registry.get("policy_loss", o.policy_loss)
    if loss.pairwise != (o.advantage == "best_vs_worst") and (loss.pairwise or o.advantage == "best_vs_worst"):
        raise ConfigError(f"optimizer.policy_loss={o.policy_loss} and optimizer.advantage={o.advantage} do not fit: "
                          "a pairwise loss (dpo_pairwise) trains on the pairs best_vs_worst marks, and only on them")
    if loss.pairwise and o.samples_per_prompt < 2:
        raise ConfigError(f"optimizer.samples_per_prompt must be at least 2 (a pair is two responses to one prompt), "
                          f"got {o.samples_per_prompt}")
    k = o.samples_per_prompt
    try:  # a dry run on two groups of zeros: an estimator states what it cannot do (groups of 1, ...)
        estimator.estimate(AdvantageInputs(scores=torch.zeros(2 * k), mask=torch.ones(2 * k, 1),
                                           kl_penalty=torch.zeros(2 * k, 1), group_size=k,
                                           values=torch.zeros(2 * k, 1), options=o.part_options(kl_coef=o.kl_coef)))
    except ValueError as exc:
        raise ConfigError(f"optimizer.advantage={o.advantage} with optimizer.samples_per_prompt={k}: {exc}") from exc
    return estimator, loss


class RLOptimizer:
    """An on-policy RL stage: the loop above with the parts its options name."""

    def __init__(self, options: Any, ctx: Any = None) -> None:
        self.options = options if isinstance(options, RLOptions) else parse(options)

    @staticmethod
    def preflight(options: Any, registry: Any) -> None:
        """Before any stage runs (core/preflight.py): the options hold together and name parts
        that exist (an unknown name gets the registry's did-you-mean)."""
        parts(registry, options if isinstance(options, RLOptions) else parse(options))

    def run(self, ctx: StageContext) -> StageResult:
        o = self.options
        settings = ctx.trainer_settings()
        if settings.batch_size < 1:
            raise ConfigError("trainer.batch_size (responses per step) must be at least 1")
        estimator, loss = parts(ctx.run.registry, o)
        scorer = (S.MainProcessScorer(ctx.preference_model) if o.reward_placement == "rank0"
                  else ctx.preference_model())
        generator = ctx.generator()
        loaded = ctx.load_model("policy")
        tokenizer = loaded.tokenizer
        pool, eval_pool = load_prompts(ctx, tokenizer, o, settings)
        sampler = Sampler(o, settings, pool, scorer, generator)

        engine = ctx.engine()  # accelerate, seeding, LoRA and gradient checkpointing as configured
        acc = engine.accelerator
        reference = Reference(o, settings, loaded.model, acc)
        policy = engine.prepare_model(loaded.model)
        model = ActorCritic(policy, **(build_critic(ctx, o, policy) if estimator.needs_critic else {}))
        model.to(acc.device)
        reference.to(acc.device)
        optimizer = make_optimizer(parameter_groups(model, o, settings.learning_rate), settings)
        total = max(1, settings.max_steps)
        scheduler = make_scheduler(optimizer, settings, total)
        model, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
        kl_ctl = controller(o.kl_coef, o.adaptive_kl, o.target_kl, o.kl_horizon)
        moments = RunningMoments()

        checkpoint_dir = ctx.dir / "checkpoints"
        step, extra = 0, {}
        state = resume_state(acc, checkpoint_dir, ctx.name)
        if state is not None:
            step, extra = int(state["step"]), state.get("extra", {})
            kl_ctl.load_state_dict(state["kl_controller"])
            moments.load_state_dict(state["reward_moments"])
        t = Training(o, settings, ctx.name, checkpoint_dir, acc, model, optimizer, tokenizer, sampler, reference,
                     estimator, loss, kl_ctl, moments, diversity_of(o))

        samples_file = ctx.dir / "samples.jsonl"
        samples = [r for r in read_jsonl(samples_file) if r.get("step", 0) <= step] if samples_file.exists() else []
        if "eval_start" not in extra and eval_pool is not None:
            extra["eval_start"] = evaluate(o, settings, t.policy(), tokenizer, eval_pool, scorer, generator)
            if acc.is_main_process:
                ctx.log(0, {f"eval/{k}": v for k, v in extra["eval_start"].items()})

        one_step = pairwise_step if loss.pairwise else ratio_step
        progress = progress_bar(settings, acc, total, step, ctx.name)
        final: dict[str, float] = {}
        try:
            while step < total and not ctx.run.stop_requested:
                result = one_step(t, step)
                metrics = result.metrics
                scheduler.step()
                step += 1
                metrics["lr"] = scheduler.get_last_lr()[0]
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(reward=f"{metrics['reward/mean']:.3f}",
                                         kl=f"{metrics.get('rollout/kl', 0.0):.3f}",
                                         rollout_tok_s=f"{metrics['time/generated_tokens_per_second']:.0f}")
                if acc.is_main_process and (step % max(1, settings.log_every) == 0 or step == total):
                    ctx.log(step, metrics)
                final = metrics
                if o.sample_every and (step % o.sample_every == 0 or step == 1 or step == total):
                    samples.extend(sample_rows(o, step, result.rollout, result.scores, result.kl))
                    if acc.is_main_process:
                        write_jsonl(samples_file, samples)
                if settings.checkpoint_every and step % settings.checkpoint_every == 0 and step < total:
                    # policy, critic, optimizer, schedule and RNG (accelerate) plus the KL controller and
                    # reward statistics, sealed by a manifest and renamed into place (core/checkpoints.py)
                    checkpoints.save(acc, checkpoint_dir, step,
                                     {"step": step, "kl_controller": kl_ctl.state_dict(),
                                      "reward_moments": moments.state_dict(), "extra": extra},
                                     settings.keep_checkpoints)
        finally:
            if progress is not None:
                progress.close()

        policy = t.policy()
        result = {f"train/{k}": v for k, v in final.items()}
        result["steps"] = step
        if eval_pool is not None:
            end = evaluate(o, settings, policy, tokenizer, eval_pool, scorer, generator)
            if acc.is_main_process:
                ctx.log(step, {f"eval/{k}": v for k, v in end.items()})
            result.update({f"eval/{k}": v for k, v in end.items()})
            result.update({f"eval/start_{k}": v for k, v in extra["eval_start"].items()})
        if hasattr(policy, "merge_and_unload"):
            policy = policy.merge_and_unload()
        save_model(policy, tokenizer, ctx.dir / "model")
        result["data/prompts"] = len(pool)
        counters = capability(scorer, CacheCounters)  # a cached scorer (preference_model=judge)
        if counters is not None and counters.hits is not None:
            result["reward/cache_hits"] = counters.hits
            result["reward/cache_misses"] = counters.misses
        return StageResult(metrics=result, artifacts={"model": ctx.artifact(ctx.dir / "model")})


def diversity_of(o: RLOptions) -> Any:
    """DivPO's diversity measure (core/diversity.py), or None when pairs are best vs worst."""
    if o.pair_selection != "divpo":
        return None
    from alignkit.core.diversity import diversity_measure

    return diversity_measure(o.diversity, n=o.diversity_n, embedder=o.embedder, what="optimizer.diversity")
