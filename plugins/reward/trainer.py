"""The ``reward`` optimizer: trains a Bradley-Terry reward model on preference pairs.

It is a pipeline stage (usually named ``reward_model``) that leaves the policy untouched:
it reads ``ctx.dataset("preferences", ...)`` (so AI labels from an earlier ``label`` stage
win over the configured data), starts the backbone from the current policy, trains with the
shared engine (accumulation, checkpoints, resume, NaN guard, LoRA) and hands later stages the
artifact ``reward_model`` (never ``model``: that name is the policy).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import torch

from alignkit.core.engine import TrainerConfig, shuffled_batches
from alignkit.core.errors import ConfigError
from alignkit.core.lm import Encoded
from alignkit.core.pipeline import StageContext
from alignkit.core.types import ModelSpec, StageResult
from alignkit.plugins.reward.bradley_terry import (
    POOLING,
    encode,
    from_causal_lm,
    save_reward_model,
    sequence_rewards,
)
from alignkit.plugins.reward.losses import bradley_terry_loss, preference_accuracy

log = logging.getLogger("alignkit")


@dataclass
class RewardConfig:
    """Options of ``optimizer=reward`` (training defaults come from ``trainer.*``)."""

    margin: float = 0.0  # required gap r_w - r_l (Llama 2 style), in reward units; x (2*strength - 1) for soft labels
    centering: float = 0.0  # coefficient of (r_w + r_l)^2 that keeps rewards near zero
    ensemble: int = 1  # K scalar heads on a shared backbone
    bootstrap: bool = True  # with K > 1: each head sees its own Poisson(1) resample of the pairs
    backbone: Optional[str] = None  # null: the current policy; else a model name or path
    eval_batch_size: int = 16
    max_eval_pairs: int = 500


@dataclass
class Pair:
    chosen: Encoded
    rejected: Encoded
    strength: float


def encode_pairs(tokenizer: Any, rows: Any, max_length: int) -> tuple[list[Pair], int]:
    """Encoded pairs, dropping those whose two sides are identical (no preference to learn)."""
    pairs, identical = [], 0
    for row in rows if rows is not None else []:
        if row["chosen"] == row["rejected"]:
            identical += 1
            continue
        chosen = encode(tokenizer, row["prompt"], row["chosen"], max_length)
        rejected = encode(tokenizer, row["prompt"], row["rejected"], max_length)
        if chosen.input_ids == rejected.input_ids:  # different only beyond max_length
            identical += 1
            continue
        strength = row.get("strength")
        pairs.append(Pair(chosen, rejected, 1.0 if strength is None else float(strength)))
    return pairs, identical


class RewardTask:
    """Batches of pair indices; chosen and rejected go through one packed forward."""

    def __init__(self, options: RewardConfig, train: list[Pair], held_out: list[Pair], settings: TrainerConfig,
                 pad_id: int) -> None:
        self.o, self.train, self.held_out, self.settings, self.pad_id = options, train, held_out, settings, pad_id
        self.weights = self._bootstrap_weights()
        self.eval_rewards: torch.Tensor | None = None  # mean-head rewards of the last evaluation

    def _bootstrap_weights(self) -> torch.Tensor:
        """[pairs, heads] resampling weights: Poisson(1) per head (the online bootstrap), fixed by the seed."""
        shape = (len(self.train), self.o.ensemble)
        if self.o.ensemble == 1 or not self.o.bootstrap:
            return torch.ones(shape)
        generator = torch.Generator().manual_seed(self.settings.seed + 7919)
        return torch.poisson(torch.ones(shape), generator=generator)

    def batches(self, epoch: int) -> list[list[int]]:
        return shuffled_batches(len(self.train), self.settings.batch_size, self.settings.seed, epoch)

    def batch_weight(self, batch: Sequence[int]) -> float:
        return float(len(batch))

    def rewards(self, model: Any, pairs: Sequence[Pair]) -> tuple[torch.Tensor, torch.Tensor]:
        """Chosen and rejected rewards, each ``[pairs, heads]``."""
        values = sequence_rewards(model, [p.chosen for p in pairs] + [p.rejected for p in pairs], self.pad_id)
        return values[: len(pairs)], values[len(pairs):]

    def _losses(self, rw: torch.Tensor, rl: torch.Tensor, pairs: Sequence[Pair]) -> tuple[torch.Tensor, torch.Tensor]:
        strength = torch.tensor([p.strength for p in pairs], device=rw.device)
        losses = bradley_terry_loss(rw, rl, margin=self.o.margin, strength=strength, centering=self.o.centering)
        return losses, strength

    def loss(self, model: Any, batch: list[int]) -> tuple[torch.Tensor, Mapping[str, float]]:
        pairs = [self.train[i] for i in batch]
        rw, rl = self.rewards(model, pairs)
        losses, strength = self._losses(rw, rl, pairs)
        weights = self.weights[batch].to(losses.device)
        loss = (losses * weights).sum() / weights.sum().clamp(min=1.0)
        return loss, _summary(rw.detach(), rl.detach(), strength)

    @torch.no_grad()
    def evaluate(self, model: Any) -> dict[str, float]:
        if not self.held_out:
            return {}
        was_training = model.training
        model.eval()
        chosen, rejected = [], []
        for start in range(0, len(self.held_out), self.o.eval_batch_size):
            rw, rl = self.rewards(model, self.held_out[start:start + self.o.eval_batch_size])
            chosen.append(rw)
            rejected.append(rl)
        model.train(was_training)
        rw, rl = torch.cat(chosen), torch.cat(rejected)
        losses, strength = self._losses(rw, rl, self.held_out)
        out = {f"eval/{k}": v for k, v in _summary(rw, rl, strength).items()}
        out["eval/loss"] = float(losses.mean())
        out["eval/pairs"] = len(self.held_out)
        if rw.shape[1] > 1:
            per_head = [preference_accuracy(rw[:, k], rl[:, k], strength) for k in range(rw.shape[1])]
            out["eval/head_accuracy_min"] = min(per_head)
            out["eval/head_accuracy_max"] = max(per_head)
        self.eval_rewards = torch.cat([rw.mean(dim=1), rl.mean(dim=1)]).cpu()
        return out


def _summary(rw: torch.Tensor, rl: torch.Tensor, strength: torch.Tensor) -> dict[str, float]:
    """Metrics of the ensemble mean (one head: the head itself)."""
    mw, ml = rw.mean(dim=1), rl.mean(dim=1)
    both = torch.cat([mw, ml])
    out = {
        "accuracy": preference_accuracy(mw, ml, strength),
        "margin": float((mw - ml).mean()),
        "reward_mean": float(both.mean()),
        "reward_std": float(both.std()) if both.numel() > 1 else 0.0,
        "rewards/chosen": float(mw.mean()),
        "rewards/rejected": float(ml.mean()),
    }
    if rw.shape[1] > 1:
        out["ensemble_std"] = float(torch.cat([rw, rl]).std(dim=1).mean())
    return out


class RewardOptimizer:
    """``optimizer=reward``: a Bradley-Terry reward model, artifact ``reward_model``."""

    def __init__(self, options: RewardConfig, ctx: Any = None) -> None:
        self.options = options  # validated by the core (core/options.py); ctx: the StageContext
        o = self.options
        if o.ensemble < 1:
            raise ConfigError(f"optimizer.ensemble must be at least 1, not {o.ensemble}")
        if not (math.isfinite(o.margin) and o.margin >= 0):
            raise ConfigError(f"optimizer.margin must be a finite number >= 0, not {o.margin}")
        if not (math.isfinite(o.centering) and o.centering >= 0):
            raise ConfigError(f"optimizer.centering must be a finite number >= 0, not {o.centering}")
        if o.eval_batch_size < 1 or o.max_eval_pairs < 0:
            raise ConfigError("optimizer.eval_batch_size must be >= 1 and optimizer.max_eval_pairs >= 0")

    def run(self, ctx: StageContext) -> StageResult:
        o = self.options
        settings = ctx.trainer_settings()
        train_rows = ctx.dataset("preferences", "train")
        if train_rows is None or len(train_rows) == 0:
            raise ConfigError(f"stage '{ctx.name}' trains a reward model and needs preference pairs; "
                              f"the data source and earlier stages provide none")
        spec = ctx.policy if o.backbone is None else ModelSpec(str(o.backbone))
        loaded = ctx.load_model("reward", spec)
        tokenizer = loaded.tokenizer
        train, identical = encode_pairs(tokenizer, train_rows, settings.max_length)
        eval_rows = ctx.dataset("preferences", "eval")
        eval_rows = list(eval_rows)[: o.max_eval_pairs] if eval_rows is not None else []
        held_out, _ = encode_pairs(tokenizer, eval_rows, settings.max_length)
        if not train:
            raise ConfigError(f"stage '{ctx.name}': every preference pair has identical chosen and rejected "
                              f"responses (within trainer.max_length={settings.max_length})")
        if identical:
            log.warning("%s: %d training pairs skipped: chosen and rejected are identical", ctx.name, identical)
        if not held_out:
            log.warning("%s: no held-out preference pairs; only training metrics are reported", ctx.name)

        model = from_causal_lm(loaded.model, tokenizer, heads=o.ensemble, seed=settings.seed)
        del loaded
        model = prepare(model, settings)
        task = RewardTask(o, train, held_out, settings, int(tokenizer.pad_token_id))
        outcome = ctx.engine().train(model, task)

        metrics = dict(outcome.metrics)
        metrics["data/train_pairs"] = len(train)
        metrics["data/eval_pairs"] = len(held_out)
        metrics["data/identical_pairs"] = identical
        stats = task.eval_rewards
        if stats is None:  # no held-out set: statistics of (up to) 64 training pairs
            stats = _train_stats(task, outcome.model)
        metadata = {
            "format": "alignkit-reward-model/1",
            "kind": "bradley_terry",
            "heads": o.ensemble,
            "pooling": POOLING,
            "template": "chat template: prompt messages + one assistant turn with the response",
            "max_length": settings.max_length,
            "base_model": spec.name_or_path,
            "margin": o.margin,
            "centering": o.centering,
            "bootstrap": bool(o.bootstrap and o.ensemble > 1),
            "steps": outcome.steps,
            "train_pairs": len(train),
            "reward_stats": {"mean": float(stats.mean()), "std": float(stats.std()) if stats.numel() > 1 else 1.0,
                             "on": "held-out pairs" if task.eval_rewards is not None else "training pairs"},
            "eval": {k[5:]: v for k, v in metrics.items() if k.startswith("eval/")},
        }
        out = ctx.dir / "reward_model"
        save_reward_model(outcome.model, tokenizer, out, metadata)
        return StageResult(metrics=metrics, artifacts={"reward_model": ctx.artifact(out)})


@torch.no_grad()
def _train_stats(task: RewardTask, model: Any) -> torch.Tensor:
    model.eval()
    rw, rl = task.rewards(model, task.train[:64])
    return torch.cat([rw.mean(dim=1), rl.mean(dim=1)]).cpu()


def prepare(model: Any, settings: TrainerConfig) -> Any:
    """Gradient checkpointing and LoRA for a classifier: the adapters go on the backbone and the
    new ``score`` head is trained in full (peft's SEQ_CLS task; the engine merges them at the end)."""
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if settings.lora:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                            target_modules=settings.lora_target_modules, task_type="SEQ_CLS",
                            modules_to_save=["score"])
        model = get_peft_model(model, config)
    return model
