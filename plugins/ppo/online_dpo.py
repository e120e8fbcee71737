"""The ``online_dpo`` optimizer: DPO on pairs the policy samples as it trains.

Each step samples ``samples_per_prompt`` responses to each of ``trainer.batch_size /
samples_per_prompt`` prompts with the current policy, scores them with the preference model
(a rule, a reward model or an AI judge), pairs each prompt's best response with its worst and
takes one DPO step on those pairs against the frozen reference (Guo et al. 2024, "Direct
Language Model Alignment from Online AI Feedback"; TRL's ``OnlineDPOTrainer``). Unlike
``pipeline=iterative_dpo``, which labels a whole round of pairs and then trains on them,
nothing here is ever off-policy by more than one step.

Rollouts, scoring, the reference, checkpoints and resume, the before/after evaluation and the
rollout metrics are PPO's (``PPOOptimizer``); the loss is the DPO family's (plugins/dpo/losses.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import OmegaConf

from alignkit.core.engine import TrainerConfig
from alignkit.core.errors import ConfigError
from alignkit.core.interfaces import score_metrics
from alignkit.plugins.dpo.losses import LOSS_TYPES, dpo_loss, implicit_reward_accuracy
from alignkit.plugins.ppo import losses as L
from alignkit.plugins.ppo import sharding as S
from alignkit.plugins.ppo.critic_free import RLOOOptimizer
from alignkit.plugins.ppo.ppo import stop_if_diverged
from alignkit.plugins.ppo.rollout import PromptPool, Rollout, micro_batch, response_mask

TIES = ("skip", "keep")


@dataclass
class OnlineDPOConfig:
    """Options of ``optimizer=online_dpo``. ``trainer.batch_size`` is the number of responses per
    step (a multiple of ``samples_per_prompt``), so a step trains on ``batch_size / k`` pairs."""

    samples_per_prompt: int = 2  # k: the best and the worst of k responses form the prompt's pair
    beta: float = 0.1
    loss_type: str = "sigmoid"  # any of plugins/dpo/losses.py LOSS_TYPES
    label_smoothing: float = 0.0
    alpha: float = 0.0  # rdpo
    gamma: float = 0.0  # simpo
    ties: str = "skip"  # skip: a prompt whose responses all score the same trains nothing | keep: the first is "chosen" (TRL)
    # rollouts (as ppo)
    max_new_tokens: int = 48
    min_new_tokens: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    max_prompt_tokens: int = 0  # 0: trainer.max_length - max_new_tokens
    generation_batch_size: int = 0  # 0: the whole rollout batch in one generate call
    missing_eos_penalty: float = 0.0  # subtracted from the score of a response cut by max_new_tokens
    prompt_filter: Optional[str] = None
    reference: str = "auto"  # auto | copy | adapter | none (none: loss_type=simpo only)
    reward_placement: str = "every_rank"
    reference_placement: str = "every_rank"
    # reporting
    sample_every: int = 10
    samples_per_log: int = 4
    eval_prompts: int = 16
    eval_temperature: float = 0.0

    # read by PPO's loop; DPO's own beta is its KL control, scores are only compared
    kl_coef = 0.0
    adaptive_kl = False
    target_kl = 6.0
    kl_horizon = 10000
    reward_scale = 1.0
    reward_clip = 0.0
    reward_normalize = False


def online_pairs(scores: torch.Tensor, k: int, ties: str = "skip") -> list[tuple[int, int]]:
    """(chosen row, rejected row) per group of ``k`` consecutive scores: the first highest and the
    first lowest. A group whose scores are all equal has no preference: ``ties=skip`` leaves it
    out, ``ties=keep`` pairs its first response (chosen) with its second, as TRL does."""
    if scores.numel() % k:
        raise ValueError(f"{scores.numel()} scores do not split into groups of {k}")
    pairs = []
    for g, group in enumerate(scores.view(-1, k)):
        best, worst = int(group.argmax()), int(group.argmin())
        if group[best] == group[worst]:
            if ties == "skip":
                continue
            best, worst = 0, 1
        pairs.append((g * k + best, g * k + worst))
    return pairs


def _options(config: Any) -> OnlineDPOConfig:
    data = OmegaConf.to_container(config, resolve=True) if not isinstance(config, dict) else dict(config)
    data.pop("name", None)
    o = OnlineDPOConfig(**data)
    choices = {"loss_type": LOSS_TYPES, "ties": TIES, "reference": ("auto", "copy", "adapter", "none"),
               "reward_placement": S.PLACEMENTS, "reference_placement": S.PLACEMENTS}
    for key, allowed in choices.items():
        if getattr(o, key) not in allowed:
            raise ConfigError(f"optimizer.{key} must be one of {', '.join(allowed)}, not '{getattr(o, key)}'")
    if o.samples_per_prompt < 2:
        raise ConfigError(f"optimizer.samples_per_prompt must be at least 2 (a pair is two responses to one prompt), "
                          f"got {o.samples_per_prompt}")
    if o.beta <= 0 or o.max_new_tokens < 1:
        raise ConfigError("optimizer.beta must be > 0 and optimizer.max_new_tokens at least 1")
    if o.reference == "none" and o.loss_type != "simpo":
        raise ConfigError(f"optimizer.reference=none: loss_type={o.loss_type} compares with the reference model's "
                          "log-probs; keep a reference or use loss_type=simpo (reference-free)")
    if not 0 < o.top_p <= 1 or o.temperature < 0:
        raise ConfigError("optimizer.top_p must be in (0, 1] and temperature >= 0")
    return o


class OnlineDPOOptimizer(RLOOOptimizer):
    """``optimizer=online_dpo``: sample k, pair the best with the worst, one DPO step."""

    estimator = "online_dpo"
    schema = OnlineDPOConfig

    def __init__(self, config: Any) -> None:
        self.options = _options(config)

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

        pairs = online_pairs(scores, k, o.ties)  # this process's rows
        total = S.global_sum(float(len(pairs)))
        weights = [1.0] * len(pairs)
        if not pairs and total:  # every process joins the gradient all-reduce, with a zero-weight pair
            pairs, weights = [(0, 1)], [0.0]
        rows = [r for pair in pairs for r in pair]  # chosen, rejected side by side
        chosen_scores, rejected_scores = scores[rows[0::2]], scores[rows[1::2]]
        sub = _select(rollout, rows)
        mask = response_mask(sub.response_lengths).to(device)

        model.eval()  # no dropout: the sampled and the trained policy are one function
        stats: dict[str, float] = {"update/optimizer_steps": 0}
        kl_rows = torch.zeros(len(rows))
        if total:
            ref_logps = None
            if self._mode != "none":
                with torch.no_grad():
                    ref_logps = self._reference_logps(policy, reference, sub, mask, 1.0)
            stats, kl_rows = self._update(model, optimizer, sub, mask, ref_logps, torch.tensor(weights), total,
                                          settings, step, acc, checkpoint_dir)

        lengths = S.gather_cat(rollout.response_lengths)
        elapsed = S.global_max(time.perf_counter() - started)
        generate_seconds = S.global_max(generate_seconds)
        real = torch.tensor(weights, dtype=torch.bool)
        groups = raw.view(-1, k)
        margin = S.global_sum(float((chosen_scores - rejected_scores)[real].sum()))
        metrics = {
            "reward/mean": float(raw.mean()),
            "reward/std": float(raw.std()) if len(raw) > 1 else 0.0,
            "reward/zero_std_fraction": float((groups.max(dim=1).values == groups.min(dim=1).values).float().mean()),
            "reward/pair_margin": margin / max(total, 1.0),  # chosen minus rejected score, over the trained pairs
            "pairs/trained": total,
            "rollout/response_length_mean": float(lengths.float().mean()),
            "rollout/responses_per_process": float(n),
            "rollout/truncated_fraction": float(truncated.float().mean()),
            "rollout/sequence_tokens": S.global_sum(sum(len(s.input_ids) for s in sub.sequences)),
            "time/generate_seconds": generate_seconds,
            "time/step_seconds": elapsed,
            "time/generated_tokens_per_second": int(lengths.sum()) / max(generate_seconds, 1e-9),
            **stats,
            **score_metrics(scorer),  # a composite's members, combined score, lambda (this process's batch)
        }
        if self._mode != "none" and total:  # KL(policy || reference) per trained response (k1, summed over tokens)
            metrics["rollout/kl"] = S.global_sum(float(kl_rows.view(-1, 2)[real].sum())) / (2 * total)
        # samples.jsonl: the trained pairs, chosen then rejected
        return metrics, sub, scores[rows], kl_rows

    def _update(self, model: Any, optimizer: Any, sub: Rollout, mask: torch.Tensor, ref_logps: torch.Tensor | None,
                weights: torch.Tensor, total: float, settings: TrainerConfig, step: int, acc: Any,
                checkpoint_dir: Path) -> tuple[dict[str, float], torch.Tensor]:
        """One optimizer step on the pairs (rows 2j, 2j+1 of ``sub``), in ``trainer.grad_accum``
        micro-batches; the loss is the mean over every process's pairs. Returns the metrics and
        each row's summed log-ratio to the reference (its sampled KL, k1)."""
        o = self.options
        world = S.layout()[0]
        count = len(weights)
        # every process takes the same number of backward passes (each one joins an all-reduce),
        # so the split follows the process with the fewest pairs
        micro = max(1, min(settings.grad_accum, -int(S.global_max(-float(count)))))
        kl_rows = torch.zeros(2 * count)
        sums: dict[str, float] = {}
        for part in (list(range(count))[i::micro] for i in range(micro)):
            rows_list = [r for j in part for r in (2 * j, 2 * j + 1)]
            rows, width, m, batch = micro_batch(sub, mask, rows_list)
            out = model(batch, m, 1.0, with_values=False)
            logps = (out.logprobs * m).sum(dim=1)  # [2p] summed response log-probs
            lengths = m.sum(dim=1)
            ref = (ref_logps[rows, :width] * m).sum(dim=1) if ref_logps is not None else None
            losses, chosen_r, rejected_r = dpo_loss(
                logps[0::2], logps[1::2], ref[0::2] if ref is not None else None,
                ref[1::2] if ref is not None else None, beta=o.beta, loss_type=o.loss_type,
                label_smoothing=o.label_smoothing, chosen_lengths=lengths[0::2], rejected_lengths=lengths[1::2],
                alpha=o.alpha, gamma=o.gamma)
            w = weights[part].to(losses.device)
            loss = (losses * w).sum() / total
            stop_if_diverged(loss, self.estimator, step, checkpoint_dir)
            acc.backward(loss * world)  # the all-reduce averages the processes' gradients
            if ref is not None:
                kl_rows[torch.tensor(rows_list)] = (logps - ref).detach().float().cpu()
            real = w > 0
            for key, value in (("loss", losses), ("rewards/chosen", chosen_r), ("rewards/rejected", rejected_r),
                               ("rewards/margin", chosen_r - rejected_r), ("logps/chosen", logps[0::2]),
                               ("logps/rejected", logps[1::2]), ("length/chosen", lengths[0::2]),
                               ("length/rejected", lengths[1::2])):
                sums[key] = sums.get(key, 0.0) + float(value.detach()[real].float().sum())
            # summed on every process, also one whose only pair is the zero-weight stand-in: each key
            # below is one collective call, and every process must make the same ones
            accuracy = implicit_reward_accuracy(chosen_r[real], rejected_r[real]) if real.any() else 0.0
            sums["rewards/accuracy"] = sums.get("rewards/accuracy", 0.0) + accuracy * int(real.sum())
        out = {key: S.global_sum(value) / total for key, value in sums.items()}
        if settings.max_grad_norm and settings.max_grad_norm > 0:
            out["grad_norm"] = float(acc.clip_grad_norm_(model.parameters(), settings.max_grad_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        out["update/optimizer_steps"] = 1
        return out, kl_rows


def _select(rollout: Rollout, rows: list[int]) -> Rollout:
    """The rollout's rows ``rows``, in that order."""
    return Rollout(prompts=[rollout.prompts[i] for i in rows], sequences=[rollout.sequences[i] for i in rows],
                   responses=[rollout.responses[i] for i in rows], response_lengths=rollout.response_lengths[rows],
                   truncated=rollout.truncated[rows], seconds=rollout.seconds)
