"""What ORPO and CPO share: preference pairs through one packed policy forward, no reference model.

Each method is an ``Objective``: a function of the batch's log-probs (``PairLogps``) that calls
its pure loss. Pairs are encoded and scored with the ``dpo`` optimizer's helpers (the same
chat template, truncation and packing), training runs on the shared ``Engine``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from alignkit.core import ConfigError
from alignkit.core.engine import TrainerConfig, save_model, shuffled_batches
from alignkit.core.pipeline import StageContext
from alignkit.core.types import StageResult
from alignkit.plugins.dpo.dpo import Pair, encode_pairs, pair_logps, soft_label_counts
from alignkit.plugins.dpo.losses import implicit_reward_accuracy

log = logging.getLogger("alignkit")


@dataclass
class HeldOutOptions:
    """Options every reference-free optimizer has (training defaults come from ``trainer.*``)."""

    eval_batch_size: int = 16
    max_eval_pairs: int = 200


@dataclass
class PairLogps:
    """The policy's view of a batch of pairs."""

    chosen: torch.Tensor  # summed log-probs of each chosen response, [batch]
    rejected: torch.Tensor
    chosen_lengths: torch.Tensor  # scored tokens, [batch]
    rejected_lengths: torch.Tensor
    chosen_nll: torch.Tensor  # scalar: mean NLL per chosen-response token over the batch

    @property
    def chosen_mean(self) -> torch.Tensor:
        return self.chosen / self.chosen_lengths.clamp(min=1)

    @property
    def rejected_mean(self) -> torch.Tensor:
        return self.rejected / self.rejected_lengths.clamp(min=1)


def _one_pair() -> PairLogps:
    return PairLogps(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([1]), torch.tensor([1]), torch.tensor(1.0))


ObjectiveResult = tuple[torch.Tensor, torch.Tensor, torch.Tensor, Mapping[str, float]]
Objective = Callable[[PairLogps], ObjectiveResult]
"""``objective(logps) -> (per-example losses, chosen rewards, rejected rewards, extra metrics)``;
an optimizer binds its options to its ``<method>_objective(options, logps)``."""


def check_options(options: Any, name: str, objective: Callable[[Any, PairLogps], object]) -> Any:
    """The validated options (an instance of the optimizer's schema), checked by running ``objective``
    on a made-up pair: a bad value is a config error before any model loads, worded by the loss."""
    try:
        objective(options, _one_pair())
    except ValueError as exc:
        raise ConfigError(f"optimizer={name}: {exc} (set it as optimizer.<option>=...)") from None
    return options


def score_pairs(model: Any, pairs: Sequence[Pair]) -> PairLogps:
    chosen, rejected, chosen_lengths, rejected_lengths = pair_logps(model, pairs)
    nll = -chosen.sum() / chosen_lengths.sum().clamp(min=1)
    return PairLogps(chosen, rejected, chosen_lengths, rejected_lengths, nll)


class ReferenceFreeTask:
    """Batches of preference pairs and an ``Objective``, for ``Engine.train``."""

    def __init__(self, objective: Objective, train: list[Pair], held_out: list[Pair], settings: TrainerConfig,
                 eval_batch_size: int) -> None:
        self.objective, self.train, self.held_out = objective, train, held_out
        self.settings, self.eval_batch_size = settings, eval_batch_size

    def batches(self, epoch: int) -> list[list[int]]:
        return shuffled_batches(len(self.train), self.settings.batch_size, self.settings.seed, epoch)

    def _loss(self, model: Any, pairs: Sequence[Pair]) -> tuple[torch.Tensor, dict[str, float]]:
        logps = score_pairs(model, pairs)
        losses, chosen_rewards, rejected_rewards, extra = self.objective(logps)
        metrics = {
            "nll": float(logps.chosen_nll.detach()),
            "rewards/chosen": float(chosen_rewards.mean()),
            "rewards/rejected": float(rejected_rewards.mean()),
            "rewards/margin": float((chosen_rewards - rejected_rewards).mean()),
            "rewards/accuracy": implicit_reward_accuracy(chosen_rewards, rejected_rewards),
            "logps/chosen": float(logps.chosen.detach().mean()),
            "logps/rejected": float(logps.rejected.detach().mean()),
            "length/chosen": float(logps.chosen_lengths.float().mean()),
            "length/rejected": float(logps.rejected_lengths.float().mean()),
            **extra,
        }
        return losses.mean(), metrics

    def loss(self, model: Any, batch: list[int]) -> tuple[torch.Tensor, Mapping[str, float]]:
        pairs = [self.train[i] for i in batch]
        return self._loss(model, pairs)

    @torch.no_grad()
    def evaluate(self, model: Any) -> dict[str, float]:
        """Held-out metrics, each the pair-weighted mean over chunks of ``eval_batch_size``."""
        size = self.eval_batch_size
        chunks = [self.held_out[i:i + size] for i in range(0, len(self.held_out), size)]
        if not chunks:
            return {}
        mode = model.training
        results = [self._loss(model.eval(), chunk) for chunk in chunks]
        model.train(mode)
        sums: dict[str, float] = {}
        for chunk, (loss, metrics) in zip(chunks, results):
            for key, value in {"loss": float(loss), **metrics}.items():
                sums[f"eval/{key}"] = sums.get(f"eval/{key}", 0.0) + float(value) * len(chunk)
        return {**{key: total / len(self.held_out) for key, total in sums.items()}, "eval/pairs": len(self.held_out)}

def refuse_soft_labels(name: str, splits: Mapping[str, Any]) -> None:
    """ORPO and CPO have no soft-label form: a pair with ``strength`` below 1 (a tie, a soft judge
    label) would be trained as a hard preference for its chosen side, so it is an error."""
    counts = ", ".join(f"{n} {split}" for split, n in soft_label_counts(splits).items())
    if counts:
        raise ConfigError(
            f"optimizer={name} has no soft-label form, but preference pairs have a strength below 1 ({counts}: "
            f"ties or soft judge labels) and would each train as a hard preference for 'chosen'. Use optimizer=dpo "
            "(loss_type sigmoid, cdpo, robust, ipo or rdpo take soft labels), or hard labels (strength 1: drop the "
            "ties, swap the sides of pairs below 0.5)")


def train_on_pairs(ctx: StageContext, name: str, objective: Objective, options: HeldOutOptions) -> StageResult:
    """Train the stage's policy on its preference pairs with ``objective``; save the model."""
    settings = ctx.trainer_settings()
    train_rows, held_rows = ctx.dataset("preferences", "train"), ctx.dataset("preferences", "eval")
    held_rows = None if held_rows is None else list(held_rows)[:options.max_eval_pairs]
    refuse_soft_labels(name, {"train": train_rows, "eval": held_rows})
    loaded = ctx.load_model("policy")
    train, dropped = encode_pairs(loaded.tokenizer, train_rows, settings.max_length)
    held_out = encode_pairs(loaded.tokenizer, held_rows or [], settings.max_length)[0]
    if not train:
        raise ValueError(f"{name}: no preference pair fits trainer.max_length={settings.max_length}; raise it")
    if dropped:
        log.warning("%s: %d pairs dropped: the prompt alone fills max_length=%d", name, dropped, settings.max_length)
    engine = ctx.engine()
    task = ReferenceFreeTask(objective, train, held_out, settings, options.eval_batch_size)
    outcome = engine.train(engine.prepare_model(loaded.model), task)
    save_model(outcome.model, loaded.tokenizer, ctx.dir / "model", state_dict=outcome.state_dict)
    metrics = {**outcome.metrics, "data/train_pairs": len(train), "data/dropped_pairs": dropped}
    return StageResult(metrics=metrics, artifacts={"model": ctx.artifact(ctx.dir / "model")})
