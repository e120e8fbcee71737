"""The ``kto`` optimizer: alignkit's engine and LM helpers, KTO's loss and data.

Only what is KTO-specific lives here; batching, accumulation, checkpoints, resume and
logging come from ``alignkit.core.engine``, and log-probabilities from ``alignkit.core.lm``
(packed rows, LM head applied at completion tokens only).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import torch

from alignkit.core import ConfigError, StageResult
from alignkit.core.engine import TrainerConfig, save_model, shuffled_batches
from alignkit.core.lm import Encoded, encode_prompt_response, pack, sequence_logps
from alignkit.core.pipeline import StageContext
from alignkit_kto.examples import Example, examples_from_pairs, read_examples
from alignkit_kto.losses import kl_reference_point, kto_loss, mismatched_partners, weight_balance

log = logging.getLogger("alignkit")

REFERENCE_MODES = ("precompute", "copy")


@dataclass
class KTOConfig:
    """Options of ``optimizer=kto`` (training defaults come from ``trainer.*``)."""

    beta: float = 0.1
    desirable_weight: float = 1.0  # lambda_D
    undesirable_weight: float = 1.0  # lambda_U
    examples: Optional[str] = None  # JSONL of unpaired {"prompt", "completion", "label"}; else preference pairs
    eval_examples: Optional[str] = None
    use_feedback: bool = True  # with feedback=<name>, the provider decides which response of a pair is desirable
    reference: str = "precompute"  # precompute (no second model in memory) | copy (a frozen copy)
    eval_batch_size: int = 16
    max_eval_examples: int = 200


@dataclass
class Item:
    example: Example
    encoded: Encoded


def _encode(tokenizer: Any, examples: Sequence[Example], max_length: int) -> tuple[list[Item], int]:
    items, dropped = [], 0
    for ex in examples:
        enc = encode_prompt_response(tokenizer, ex.messages, ex.completion, max_length)
        if sum(enc.scored[1:]) == 0:  # the prompt alone fills max_length
            dropped += 1
            continue
        items.append(Item(ex, enc))
    return items, dropped


def _key(seq: Encoded) -> tuple:
    return tuple(seq.input_ids), tuple(seq.scored)


class Reference:
    """Reference log-probs by sequence. ``precompute`` fills them from the initial policy before
    training and drops the model; ``copy`` keeps a frozen copy and fills them on demand."""

    def __init__(self, model: Any, batch_size: int) -> None:
        self.model, self.batch_size = model, batch_size
        self.values: dict[tuple, float] = {}

    @torch.no_grad()
    def fill(self, sequences: Sequence[Encoded]) -> int:
        missing = list({_key(s): s for s in sequences if _key(s) not in self.values}.values())
        if missing and self.model is None:
            raise RuntimeError(f"kto: {len(missing)} sequences have no precomputed reference log-probs; "
                               f"use optimizer.reference=copy")
        if not missing:
            return 0
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start:start + self.batch_size]
            sums, _ = sequence_logps(self.model, pack(chunk).to(device))
            for seq, value in zip(chunk, sums.tolist()):
                self.values[_key(seq)] = value
        self.model.train(was_training)
        return len(missing)

    def __call__(self, sequences: Sequence[Encoded]) -> torch.Tensor:
        self.fill(sequences)
        return torch.tensor([self.values[_key(s)] for s in sequences])


class KTOTask:
    """Batches of examples and the KTO loss, for ``Engine.train``."""

    def __init__(self, options: KTOConfig, train: list[Item], held_out: list[Item], settings: TrainerConfig,
                 tokenizer: Any) -> None:
        self.o, self.train, self.held_out, self.settings, self.tokenizer = options, train, held_out, settings, tokenizer
        self.reference: Reference | None = None
        self._mismatched: dict[tuple, Encoded] = {}

    def batches(self, epoch: int) -> list[list[int]]:
        return shuffled_batches(len(self.train), self.settings.batch_size, self.settings.seed, epoch)

    def batch_weight(self, batch: list[int]) -> int:
        return len(batch)  # the loss is a mean over examples

    def planned_batches(self, total_steps: int, world: int = 1) -> list[list[int]]:
        """The batches ``Engine.train`` will take for ``total_steps`` steps (it skips an epoch's
        last batches when fewer than ``world`` remain), so ``precompute`` covers exactly them."""
        needed = total_steps * self.settings.grad_accum * world
        out: list[list[int]] = []
        epoch = 0
        while len(out) < needed:
            batches = self.batches(epoch)
            usable = len(batches) - len(batches) % world
            out += batches[:min(usable, needed - len(out))]
            epoch += 1
        return out

    def eval_chunks(self) -> list[list[Item]]:
        size = self.o.eval_batch_size
        return [self.held_out[i:i + size] for i in range(0, len(self.held_out), size)]

    def sequences(self, items: Sequence[Item]) -> tuple[list[Encoded], list[Encoded]]:
        """The batch's own sequences and its mismatched ones (prompt i, completion of its partner)."""
        partners = mismatched_partners([it.example.prompt for it in items])
        mismatched = []
        for item, j in zip(items, partners):
            other = items[j].example
            key = (item.example.prompt, other.completion)
            if key not in self._mismatched:
                self._mismatched[key] = encode_prompt_response(self.tokenizer, item.example.messages,
                                                               other.completion, self.settings.max_length)
            mismatched.append(self._mismatched[key])
        return [it.encoded for it in items], mismatched

    def _loss(self, model: Any, items: Sequence[Item]) -> tuple[torch.Tensor, dict[str, float]]:
        assert self.reference is not None
        matched, mismatched = self.sequences(items)
        device = next(model.parameters()).device
        policy, counts = sequence_logps(model, pack(matched).to(device))
        with torch.no_grad():  # z0 is a baseline, not a target: no gradient flows through it
            policy_mm, _ = sequence_logps(model, pack(mismatched).to(device))
        reference = self.reference(matched).to(device)
        z0 = kl_reference_point(policy_mm, self.reference(mismatched).to(device))
        desirable = torch.tensor([it.example.desirable for it in items], device=device)
        losses, rewards = kto_loss(policy, reference, desirable, z0, beta=self.o.beta,
                                   desirable_weight=self.o.desirable_weight,
                                   undesirable_weight=self.o.undesirable_weight)
        good, bad = rewards[desirable], rewards[~desirable]
        metrics = {
            "kl": float(z0),
            # an example is "right" when its implied reward sits on its label's side of z0
            "rewards/accuracy": float(((rewards > self.o.beta * z0) == desirable).float().mean()),
            "logps/completion": float(policy.detach().mean()),
            "length/completion": float(counts.float().mean()),
            "examples/desirable": float(desirable.sum()),
            "examples/undesirable": float((~desirable).sum()),
        }
        # a batch may hold one kind only; a missing key is averaged over the batches that have it
        if good.numel():
            metrics["rewards/desirable"] = float(good.mean())
        if bad.numel():
            metrics["rewards/undesirable"] = float(bad.mean())
        if good.numel() and bad.numel():
            metrics["rewards/margin"] = float(good.mean() - bad.mean())
        return losses.mean(), metrics

    def loss(self, model: Any, batch: list[int]) -> tuple[torch.Tensor, Mapping[str, float]]:
        return self._loss(model, [self.train[i] for i in batch])

    @torch.no_grad()
    def evaluate(self, model: Any) -> dict[str, float]:
        if not self.held_out:
            return {}
        was_training = model.training
        model.eval()
        totals: dict[str, float] = {}
        weights: dict[str, int] = {}
        for chunk in self.eval_chunks():
            loss, metrics = self._loss(model, chunk)
            metrics["loss"] = float(loss)
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value * len(chunk)
                weights[key] = weights.get(key, 0) + len(chunk)
        model.train(was_training)
        out = {f"eval/{k}": v / weights[k] for k, v in totals.items() if not k.startswith("examples/")}
        out["eval/examples"] = len(self.held_out)
        return out


class KTOOptimizer:
    """``optimizer=kto``: Kahneman-Tversky Optimization against a frozen reference."""

    def __init__(self, options: KTOConfig, ctx: Any = None) -> None:
        """alignkit validates ``optimizer.*`` into ``options``; ``ctx`` is the StageContext (unused here)."""
        self.options = options
        o = self.options
        if o.beta <= 0:
            raise ConfigError(f"optimizer.beta must be > 0, not {o.beta}")
        if o.desirable_weight <= 0 or o.undesirable_weight <= 0:
            raise ConfigError("optimizer.desirable_weight and optimizer.undesirable_weight must be > 0")
        if o.reference not in REFERENCE_MODES:
            raise ConfigError(f"optimizer.reference must be one of {', '.join(REFERENCE_MODES)}, not '{o.reference}'")

    def _examples(self, ctx: StageContext) -> tuple[list[Example], list[Example], dict[str, float]]:
        o = self.options
        if o.examples:
            held_out = read_examples(o.eval_examples) if o.eval_examples else []
            return read_examples(o.examples), held_out, {}
        train_rows = ctx.dataset("preferences", "train")
        if train_rows is None:
            raise ConfigError("kto needs preference pairs (data with preferences) or unpaired examples "
                              "(optimizer.examples=<file.jsonl>)")
        eval_rows = ctx.dataset("preferences", "eval")
        feedback = ctx.run.cfg.get("feedback")
        provider = ctx.feedback() if o.use_feedback and feedback is not None and feedback.get("name") else None
        train = examples_from_pairs(train_rows, provider)
        held_out = examples_from_pairs(list(eval_rows)[: o.max_eval_examples] if eval_rows is not None else [],
                                       provider)
        metrics = {"data/pairs": train.pairs, "data/undecided_pairs": train.dropped}
        if train.agreement is not None:
            metrics["data/feedback_agrees_with_chosen"] = train.agreement
            log.info("kto: feedback '%s' labelled %d pairs (%d ties or pending dropped); it agreed with the "
                     "data's chosen response on %.0f%%", feedback.name, train.pairs, train.dropped,
                     100 * train.agreement)
        return train.examples, held_out.examples, metrics

    def run(self, ctx: StageContext) -> StageResult:
        o = self.options
        settings = ctx.trainer_settings()
        loaded = ctx.load_model("policy")
        tokenizer = loaded.tokenizer
        train_examples, eval_examples, metrics = self._examples(ctx)
        train, dropped = _encode(tokenizer, train_examples, settings.max_length)
        held_out, _ = _encode(tokenizer, eval_examples[: o.max_eval_examples], settings.max_length)
        if not train:
            raise ValueError("kto: no training example fits trainer.max_length")
        n_good = sum(it.example.desirable for it in train)
        balance = weight_balance(n_good, len(train) - n_good, o.desirable_weight, o.undesirable_weight)
        if not 1.0 <= balance <= 4 / 3:
            log.warning("kto: desirable_weight*n_desirable / (undesirable_weight*n_undesirable) = %.2f; the paper "
                        "recommends 1 to 4/3 (n_desirable=%d, n_undesirable=%d)", balance, n_good,
                        len(train) - n_good)

        engine = ctx.engine()
        device = engine.accelerator.device  # reference log-probs are computed where training runs
        task = KTOTask(o, train, held_out, settings, tokenizer)
        if o.reference == "copy":
            frozen = copy.deepcopy(loaded.model).to(device).eval().requires_grad_(False)
            task.reference = Reference(frozen, o.eval_batch_size)
        else:
            task.reference = Reference(loaded.model.to(device), o.eval_batch_size)
            total = settings.max_steps if settings.max_steps > 0 else settings.epochs * max(
                1, len(task.batches(0)) // (settings.grad_accum * engine.accelerator.num_processes))
            needed: list[Encoded] = []
            for batch in task.planned_batches(total, engine.accelerator.num_processes):
                matched, mismatched = task.sequences([train[i] for i in batch])
                needed += matched + mismatched
            for chunk in task.eval_chunks():
                matched, mismatched = task.sequences(chunk)
                needed += matched + mismatched
            computed = task.reference.fill(needed)
            task.reference.model = None  # from here on the policy trains; the values stay
            metrics["reference/computed_sequences"] = computed
        model = engine.prepare_model(loaded.model)
        outcome = engine.train(model, task)
        save_model(outcome.model, tokenizer, ctx.dir / "model")
        metrics.update(outcome.metrics)
        metrics.update({"data/train_examples": len(train), "data/desirable": n_good,
                        "data/undesirable": len(train) - n_good, "data/dropped_examples": dropped,
                        "data/weight_balance": balance})
        return StageResult(metrics=metrics, artifacts={"model": ctx.artifact(ctx.dir / "model")})
