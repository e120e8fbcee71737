"""Supervised fine-tuning: next-token loss on assistant tokens only, packed rows."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from alignkit.core.engine import TrainerConfig, save_model, shuffled_batches
from alignkit.core.lm import Encoded, encode_conversation, pack, padded_sequence_logps, sequence_logps
from alignkit.core.pipeline import StageContext
from alignkit.core.types import StageResult

log = logging.getLogger("alignkit")


@dataclass
class SFTConfig:
    """Options of ``optimizer=sft`` (training defaults come from ``trainer.*``)."""

    packing: bool = True  # one row per batch, attention kept inside each sequence
    completion_only: bool = True  # loss on assistant tokens only
    eval_batch_size: int = 16
    max_eval_examples: int = 200


def encode_sft(tokenizer: Any, rows: Any, max_length: int, completion_only: bool) -> tuple[list[Encoded], int]:
    encoded, dropped = [], 0
    for row in rows:
        enc = encode_conversation(tokenizer, row["messages"], max_length)
        if not completion_only:
            enc = Encoded(enc.input_ids, [True] * len(enc.input_ids))
        if sum(enc.scored[1:]) == 0:  # truncated away: nothing left to learn from
            dropped += 1
            continue
        encoded.append(enc)
    return encoded, dropped


def batch_loss(model: Any, sequences: Sequence[Encoded], packing: bool, pad_id: int) -> tuple[torch.Tensor, int]:
    """Mean negative log-likelihood per scored token over the whole batch."""
    if packing:
        device = next(model.parameters()).device
        sums, counts = sequence_logps(model, pack(sequences).to(device))
    else:
        sums, counts = padded_sequence_logps(model, sequences, pad_id)
    tokens = int(counts.sum())
    return -sums.sum() / max(tokens, 1), tokens


class SFTTask:
    def __init__(self, train: list[Encoded], eval_: list[Encoded], settings: TrainerConfig, options: SFTConfig,
                 pad_id: int) -> None:
        self.train, self.eval, self.settings, self.options, self.pad_id = train, eval_, settings, options, pad_id

    def batches(self, epoch: int) -> list[list[int]]:
        return shuffled_batches(len(self.train), self.settings.batch_size, self.settings.seed, epoch)

    def batch_weight(self, batch: list[int]) -> int:
        return sum(sum(self.train[i].scored[1:]) for i in batch)

    def loss(self, model: Any, batch: list[int]) -> tuple[torch.Tensor, Mapping[str, float]]:
        sequences = [self.train[i] for i in batch]
        loss, tokens = batch_loss(model, sequences, self.options.packing, self.pad_id)
        return loss, {"tokens": tokens, "sequence_tokens": sum(len(s.input_ids) for s in sequences)}

    @torch.no_grad()
    def evaluate(self, model: Any) -> dict[str, float]:
        if not self.eval:
            return {}
        was_training = model.training
        model.eval()
        total, tokens = 0.0, 0
        size = self.options.eval_batch_size
        for start in range(0, len(self.eval), size):
            loss, n = batch_loss(model, self.eval[start:start + size], self.options.packing, self.pad_id)
            total += float(loss) * n
            tokens += n
        model.train(was_training)
        mean = total / max(tokens, 1)
        return {"eval/loss": mean, "eval/perplexity": math.exp(min(mean, 50.0)), "eval/tokens": tokens}


class SFTOptimizer:
    """``optimizer=sft``: instruction tuning on chat-formatted examples."""

    def __init__(self, options: SFTConfig, ctx: Any = None) -> None:
        self.options = options  # validated by the core (core/options.py); ctx: the StageContext

    def run(self, ctx: StageContext) -> StageResult:
        settings = ctx.trainer_settings()
        loaded = ctx.load_model("policy")
        tokenizer = loaded.tokenizer
        train_rows = ctx.dataset("sft", "train")
        eval_rows = ctx.dataset("sft", "eval")
        train, dropped = encode_sft(tokenizer, train_rows, settings.max_length, self.options.completion_only)
        eval_rows = list(eval_rows)[: self.options.max_eval_examples] if eval_rows is not None else []
        held_out, _ = encode_sft(tokenizer, eval_rows, settings.max_length, self.options.completion_only)
        if dropped:
            log.warning("sft: %d examples had no assistant tokens within max_length=%d and were dropped",
                        dropped, settings.max_length)
        if not train:
            raise ValueError("sft: no training example has assistant tokens within trainer.max_length")
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        task = SFTTask(train, held_out, settings, self.options, pad_id)
        engine = ctx.engine()
        model = engine.prepare_model(loaded.model)
        before = task.evaluate(model) if not engine.sharded else {}  # sharded: the weights are not on a GPU yet
        outcome = engine.train(model, task)
        save_model(outcome.model, tokenizer, ctx.dir / "model", state_dict=outcome.state_dict)
        metrics = dict(outcome.metrics)
        if "eval/loss" in before:
            metrics["eval/loss_before"] = before["eval/loss"]
        metrics["data/train_examples"] = len(train)
        metrics["data/dropped_examples"] = dropped
        return StageResult(metrics=metrics, artifacts={"model": ctx.artifact(ctx.dir / "model")})
