"""The update of ratio-based policy losses: epochs over shuffled minibatches, each split into
``trainer.grad_accum`` micro-batches, one optimizer step per minibatch.

A minibatch's loss is the registered policy loss's per-token terms aggregated over the whole
minibatch of every process (``core.rl.aggregate``): each micro-batch contributes its numerator
over the minibatch's denominator, so micro-batches and processes add up to one large batch.
The critic's value loss and the entropy bonus are token means weighted the same way.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from alignkit.core import checkpoints
from alignkit.core.engine import TrainerConfig, diverged
from alignkit.core.errors import ConfigError
from alignkit.core.rl import PolicyLossInputs, aggregate, masked_mean
from alignkit.plugins.rl import sharding as S
from alignkit.plugins.rl.critic import value_loss
from alignkit.plugins.rl.options import RLOptions
from alignkit.plugins.rl.ratio_level import sequence_level
from alignkit.plugins.rl.rollout import Rollout, micro_batch


@dataclass
class UpdateBatch:
    """One step's rollouts as the update sees them (this process's rows, on the device)."""

    rollout: Rollout
    mask: torch.Tensor
    old_logprobs: torch.Tensor
    advantages: torch.Tensor
    ref_logprobs: torch.Tensor | None = None
    old_values: torch.Tensor | None = None  # with a critic
    returns: torch.Tensor | None = None


def stop_if_diverged(loss: torch.Tensor, stage: str, step: int, checkpoint_dir: Path) -> None:
    """Raise ``TrainingDiverged`` (naming the checkpoint to resume from) when ``loss`` is not finite."""
    if torch.isfinite(loss.detach()):
        return
    newest = checkpoints.listing(checkpoint_dir)
    kept = f"the newest checkpoint is {newest[-1]}" if newest else "no checkpoint was written yet (trainer.checkpoint_every)"
    raise diverged(stage, float(loss.detach()), step, kept, "Lower trainer.learning_rate or raise optimizer.kl_coef")


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
    """Per key, the mean over the records that have it."""
    keys = {k for r in records for k in r}
    return {k: sum(r[k] for r in records if k in r) / sum(1 for r in records if k in r) for k in keys}


def weighted(records: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per key, the mean over micro-batch records weighted by their ``_weight``."""
    total = sum(r["_weight"] for r in records) or 1.0
    keys = [k for k in records[0] if k != "_weight"]
    return {k: sum(r[k] * r["_weight"] for r in records) / total for k in keys}


def update(o: RLOptions, loss_fn: Any, options: dict[str, Any], model: Any, optimizer: Any, b: UpdateBatch,
           settings: TrainerConfig, step: int, acc: Any, stage: str, checkpoint_dir: Path) -> dict[str, float]:
    """``update_epochs`` passes over shuffled minibatches; stops early past ``max_approx_kl``."""
    world = S.layout()[0]
    micro = max(1, settings.grad_accum)
    critic = b.old_values is not None
    mode, loss_fn = (("sequence_sum_token_mean", sequence_level(loss_fn)) if o.ratio_level == "sequence"
                     else (o.loss_aggregation, loss_fn))
    kl_coef = options["kl_coef"] if options["kl_in_loss"] and b.ref_logprobs is not None else 0.0
    records: list[dict[str, float]] = []
    entropies: list[float] = []
    optimizer_steps, stopped = 0, False
    for epoch, minibatch, parts in minibatches(len(b.rollout), o.mini_batch_size, micro, o.update_epochs,
                                               settings.seed * 7919 + step):
        # the denominator of every process's minibatch; the gradient all-reduce averages the
        # processes, so each scales its share back up by their number
        local = aggregate(b.mask[minibatch], b.mask[minibatch], mode, o.max_new_tokens)[1]
        total = S.global_sum(local) / world
        mb_records = []
        for part in parts:
            rows, width, m, batch = micro_batch(b.rollout, b.mask, part)
            out = model(batch, m, o.sampling_temperature, with_values=critic, with_entropy=epoch == 0)
            ref = b.ref_logprobs[rows, :width] if b.ref_logprobs is not None and kl_coef else None
            result = loss_fn(PolicyLossInputs(out.logprobs, b.old_logprobs[rows, :width],
                                              b.advantages[rows, :width], m, ref, options))
            numerator, weight = aggregate(result.per_token, m, mode, o.max_new_tokens)
            pg_loss = numerator / weight
            loss = pg_loss
            record = {"loss/policy": float(pg_loss.detach())}
            if critic:
                vf_loss, vf_clip = value_loss(out.values, b.old_values[rows, :width], b.returns[rows, :width], m,
                                              o.cliprange_value)
                loss = loss + o.vf_coef * vf_loss
                record.update({"loss/value": float(vf_loss.detach()), "value/clip_fraction": vf_clip})
            if out.entropy is not None:
                entropy = masked_mean(out.entropy, m)
                entropies.append(float(entropy.detach()))
                if o.entropy_coef:
                    loss = loss - o.entropy_coef * entropy
            stop_if_diverged(loss, stage, step, checkpoint_dir)
            acc.backward(loss * (weight / max(total, 1.0)))
            metrics = result.metrics
            record.update({"policy/clip_fraction": metrics["clip_fraction"], "policy/approx_kl": metrics["approx_kl"],
                           "policy/ratio_mean": metrics["ratio_mean"], "_weight": weight})
            record["loss"] = float(loss.detach())  # what the step minimises (with a critic: its value loss too)
            if not critic:
                record.update({"loss/kl": metrics.get("kl", 0.0) * kl_coef,
                               "policy/kl_in_loss": metrics.get("kl", 0.0)})
            mb_records.append(record)
        record = S.mean_over_processes(weighted(mb_records), local)
        records.append(record)
        stopped = step_unless_drifted(record, o.max_approx_kl, settings.max_grad_norm, acc, model, optimizer)
        if stopped:
            break
        optimizer_steps += 1
    out = mean_records(records)
    if not kl_coef:
        out.pop("loss/kl", None)
        out.pop("policy/kl_in_loss", None)
    local_entropy = sum(entropies) / len(entropies) if entropies else math.nan
    out["policy/entropy"] = S.mean_over_processes({"e": local_entropy})["e"]
    out["update/optimizer_steps"] = optimizer_steps
    out["update/early_stopped"] = float(stopped)
    return out
