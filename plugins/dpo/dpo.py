"""The ``dpo`` optimizer: one packed forward for chosen and rejected, cheap reference log-probs."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

from alignkit.core.engine import TrainerConfig, save_model, shuffled_batches
from alignkit.core.lm import Encoded, encode_prompt_response, pack, sample_responses, sequence_logps
from alignkit.core.pipeline import StageContext
from alignkit.core.types import StageResult
from alignkit.plugins.dpo.losses import LOSS_TYPES, SOFT_LABEL_LOSS_TYPES, dpo_loss, implicit_reward_accuracy

log = logging.getLogger("alignkit")


@dataclass
class DPOConfig:
    """Options of ``optimizer=dpo`` (training defaults come from ``trainer.*``)."""

    beta: float = 0.1
    loss_type: str = "sigmoid"
    label_smoothing: float = 0.0
    alpha: float = 0.0
    gamma: float = 0.0
    reference: str = "auto"  # auto | copy | adapter | precompute
    eval_batch_size: int = 16
    max_eval_pairs: int = 200
    kl_prompts: int = 16
    kl_max_new_tokens: int = 48
    cache_dir: Optional[str] = None  # reference log-prob cache; default $ALIGNKIT_CACHE/reference_logps


@dataclass
class Pair:
    chosen: Encoded
    rejected: Encoded
    strength: float
    prompt: Any


def soft_label_counts(splits: Mapping[str, Any]) -> dict[str, int]:
    """Per split, the pairs whose ``strength`` is not 1 (ties, soft judge labels): what a loss
    without a soft-label form would wrongly train as hard preferences. Splits with none are left out."""
    counts: dict[str, int] = {}
    for split, rows in splits.items():
        if rows is None:
            continue
        if "strength" in getattr(rows, "column_names", ()):  # a datasets.Dataset: read one column
            values = rows["strength"]
        else:
            values = [row.get("strength") for row in rows]
        count = sum(1 for value in values if value is not None and float(value) != 1.0)
        if count:
            counts[split] = count
    return counts


def encode_pairs(tokenizer: Any, rows: Any, max_length: int) -> tuple[list[Pair], int]:
    pairs, dropped = [], 0
    for row in rows:
        chosen = encode_prompt_response(tokenizer, row["prompt"], row["chosen"], max_length)
        rejected = encode_prompt_response(tokenizer, row["prompt"], row["rejected"], max_length)
        if sum(chosen.scored[1:]) == 0 or sum(rejected.scored[1:]) == 0:
            dropped += 1  # the prompt alone fills max_length
            continue
        strength = row.get("strength")
        pairs.append(Pair(chosen, rejected, 1.0 if strength is None else float(strength), row["prompt"]))
    return pairs, dropped


def pair_logps(model: Any, pairs: Sequence[Pair]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chosen and rejected summed log-probs (and scored lengths) in one packed forward."""
    device = next(model.parameters()).device
    sequences = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    sums, counts = sequence_logps(model, pack(sequences).to(device))
    n = len(pairs)
    return sums[:n], sums[n:], counts[:n], counts[n:]


def _pair_key(pair: Pair) -> str:
    digest = hashlib.sha256()
    for seq in (pair.chosen, pair.rejected):
        digest.update(json.dumps([seq.input_ids, seq.scored]).encode())
    return digest.hexdigest()[:32]


def model_fingerprint(spec_path: str, options: Mapping[str, Any]) -> str:
    """Identity of the reference model: its weight and config files' contents for a local folder
    (wherever the folder lives), else the alias or hub id and its options."""
    folder = Path(spec_path)
    if not folder.is_dir():
        digest = hashlib.sha256(json.dumps({"spec": spec_path, "options": dict(options)}, sort_keys=True).encode())
        return digest.hexdigest()[:24]
    digest = hashlib.sha256()
    for file in sorted(folder.iterdir()):
        if file.suffix in (".safetensors", ".json", ".bin") and file.is_file():
            digest.update(file.name.encode())
            with open(file, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    digest.update(block)
    return digest.hexdigest()[:24]


class ReferenceCache:
    """Reference log-probs computed once per (reference model, pair) and kept on disk.

    A rerun, a resumed run or a sweep over beta with the same reference reuses them.
    """

    def __init__(self, folder: Path) -> None:
        self.file = folder / "reference_logps.json"
        self.values: dict[str, list[float]] = json.loads(self.file.read_text()) if self.file.exists() else {}
        self.computed = 0  # distinct pairs whose log-probs this process's fills computed
        self.reused = 0  # distinct pairs they found already in the file

    def fill(self, model: Any, pairs: Sequence[Pair], batch_size: int) -> None:
        """Under N processes each computes its share of the missing pairs; all get all of them
        and the main process writes the file. A pair listed twice (a duplicate row, a pair in both
        splits) is one entry: computed once and counted once."""
        from alignkit.core import distributed

        distinct: dict[str, Pair] = {}
        for pair in pairs:
            distinct.setdefault(_pair_key(pair), pair)
        missing = [pair for key, pair in distinct.items() if key not in self.values]
        self.reused += len(distinct) - len(missing)
        if not missing:
            return
        mine = missing[distributed.rank()::distributed.world_size()]
        computed: dict[str, list[float]] = {}
        model.eval()
        with torch.no_grad():
            for start in range(0, len(mine), batch_size):
                chunk = mine[start:start + batch_size]
                c, r, _, _ = pair_logps(model, chunk)
                for pair, cv, rv in zip(chunk, c.tolist(), r.tolist()):
                    computed[_pair_key(pair)] = [cv, rv]
        for part in distributed.gather(computed):
            self.values.update(part)
        self.computed += len(missing)
        if distributed.is_main_process():
            self.save()
        distributed.barrier()

    def save(self) -> None:
        from alignkit.core.rundir import atomic_write_text

        atomic_write_text(self.file, json.dumps(self.values))

    def lookup(self, pairs: Sequence[Pair]) -> tuple[torch.Tensor, torch.Tensor]:
        values = [self.values[_pair_key(p)] for p in pairs]
        return torch.tensor([v[0] for v in values]), torch.tensor([v[1] for v in values])


class DPOTask:
    def __init__(self, optimizer: DPOOptimizer, train: list[Pair], held_out: list[Pair], settings: TrainerConfig,
                 reference: Any) -> None:
        self.opt = optimizer
        self.train, self.held_out, self.settings = train, held_out, settings
        self.reference = reference  # callable(pairs) -> (chosen, rejected) reference log-probs

    def batches(self, epoch: int) -> list[list[int]]:
        return shuffled_batches(len(self.train), self.settings.batch_size, self.settings.seed, epoch)

    def _metrics(self, model: Any, pairs: Sequence[Pair]) -> tuple[torch.Tensor, dict[str, float]]:
        o = self.opt.options
        pc, pr, lc, lr = pair_logps(model, pairs)
        rc, rr = self.reference(pairs)
        rc, rr = rc.to(pc.device), rr.to(pc.device)
        strengths = torch.tensor([p.strength for p in pairs], device=pc.device)
        use_strength = bool((strengths != 1).any())  # run() refused soft labels for losses without a form
        losses, chosen_r, rejected_r = dpo_loss(
            pc, pr, rc, rr, beta=o.beta, loss_type=o.loss_type, label_smoothing=o.label_smoothing,
            chosen_lengths=lc, rejected_lengths=lr, alpha=o.alpha, gamma=o.gamma,
            strength=strengths if use_strength else None)
        loss = losses.mean()
        metrics = {
            "rewards/chosen": float(chosen_r.mean()),
            "rewards/rejected": float(rejected_r.mean()),
            "rewards/margin": float((chosen_r - rejected_r).mean()),
            "rewards/accuracy": implicit_reward_accuracy(chosen_r, rejected_r),
            "logps/chosen": float(pc.detach().mean()),
            "logps/rejected": float(pr.detach().mean()),
            "length/chosen": float(lc.float().mean()),
            "length/rejected": float(lr.float().mean()),
            "pairs": len(pairs),
        }
        return loss, metrics

    def loss(self, model: Any, batch: list[int]) -> tuple[torch.Tensor, Mapping[str, float]]:
        return self._metrics(model, [self.train[i] for i in batch])

    @torch.no_grad()
    def evaluate(self, model: Any) -> dict[str, float]:
        if not self.held_out:
            return {}
        was_training = model.training
        model.eval()
        totals: dict[str, float] = {}
        count = 0
        size = self.opt.options.eval_batch_size
        for start in range(0, len(self.held_out), size):
            chunk = self.held_out[start:start + size]
            loss, metrics = self._metrics(model, chunk)
            metrics["loss"] = float(loss)
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + float(value) * len(chunk)
            count += len(chunk)
        model.train(was_training)
        out = {f"eval/{k}": v / count for k, v in totals.items() if k != "pairs"}
        out["eval/pairs"] = count
        return out


class DPOOptimizer:
    """``optimizer=dpo``: DPO and its variants against a frozen reference."""

    def __init__(self, options: DPOConfig, ctx: Any = None) -> None:
        self.options = options  # validated by the core (core/options.py); ctx: the StageContext
        if self.options.loss_type not in LOSS_TYPES:
            from alignkit.core import ConfigError

            raise ConfigError(f"optimizer.loss_type '{self.options.loss_type}' is not one of {', '.join(LOSS_TYPES)}")
        if self.options.reference not in ("auto", "copy", "adapter", "precompute"):
            from alignkit.core import ConfigError

            raise ConfigError("optimizer.reference must be auto, copy, adapter or precompute, "
                              f"not '{self.options.reference}'")

    def check_soft_labels(self, splits: Mapping[str, Any]) -> None:
        """Refuse, before any model is loaded, pairs with ``strength`` below 1 (ties, soft AI labels)
        under a loss with no soft-label form: it would turn a tie into a hard preference."""
        loss_type = self.options.loss_type
        if loss_type in SOFT_LABEL_LOSS_TYPES:
            return
        soft = soft_label_counts(splits)
        if soft:
            from alignkit.core import ConfigError

            counts = ", ".join(f"{n} {split}" for split, n in soft.items())
            raise ConfigError(
                f"optimizer.loss_type={loss_type} has no soft-label form, but the preference pairs have a strength "
                f"below 1 ({counts} pairs: ties or soft judge labels); {loss_type} would train each as a hard "
                f"preference for its 'chosen' side. Use optimizer.loss_type= one of "
                f"{', '.join(SOFT_LABEL_LOSS_TYPES)}, or hard labels (strength 1: drop the ties, swap the sides of "
                "pairs below 0.5)")

    def reference_mode(self, settings: TrainerConfig) -> str:
        mode = self.options.reference
        if mode == "auto":
            mode = "adapter" if settings.lora else "precompute"
        if mode == "adapter" and not settings.lora:
            from alignkit.core import ConfigError

            raise ConfigError("optimizer.reference=adapter needs trainer.lora=true")
        return mode

    def run(self, ctx: StageContext) -> StageResult:
        settings = ctx.trainer_settings()
        train_rows = ctx.dataset("preferences", "train")
        eval_rows = ctx.dataset("preferences", "eval")
        self.check_soft_labels({"train": train_rows, "eval": eval_rows})
        loaded = ctx.load_model("policy")
        tokenizer = loaded.tokenizer
        train, dropped = encode_pairs(tokenizer, train_rows, settings.max_length)
        eval_rows = list(eval_rows)[: self.options.max_eval_pairs] if eval_rows is not None else []
        held_out, _ = encode_pairs(tokenizer, eval_rows, settings.max_length)
        if not train:
            raise ValueError("dpo: no preference pair fits trainer.max_length")
        if dropped:
            log.warning("dpo: %d pairs dropped: the prompt alone fills max_length=%d", dropped, settings.max_length)

        engine = ctx.engine()
        mode = self.reference_mode(settings)
        reference_model = None
        cache = None
        if mode == "precompute" or self.options.loss_type == "simpo":
            if self.options.loss_type != "simpo":
                cache = self._reference_cache(ctx)
                task_probe = DPOTask(self, train, held_out, settings, None)
                used = self._pairs_used(task_probe, settings)
                engine.place(loaded.model)
                cache.fill(loaded.model, used + held_out, self.options.eval_batch_size)
                log.info("dpo: reference log-probs: %d computed, %d reused from %s", cache.computed,
                         cache.reused, cache.file)
                reference = cache.lookup
            else:
                reference = lambda pairs: (torch.zeros(len(pairs)), torch.zeros(len(pairs)))  # noqa: E731
        elif mode == "copy":
            reference_model = copy.deepcopy(engine.place(loaded.model)).eval().requires_grad_(False)
            reference = self._forward_reference(reference_model)
        model = engine.prepare_model(loaded.model)
        if mode == "adapter" and self.options.loss_type != "simpo":
            reference = self._adapter_reference(model)
        task = DPOTask(self, train, held_out, settings, reference)
        outcome = engine.train(model, task)
        metrics = dict(outcome.metrics)
        if ctx.run.is_main_process and outcome.state_dict is None:  # sharded weights: no generation
            metrics.update(self._kl_estimate(ctx, outcome.model, tokenizer, reference_model, settings))
        save_model(outcome.model, tokenizer, ctx.dir / "model", state_dict=outcome.state_dict)
        metrics["data/train_pairs"] = len(train)
        metrics["data/dropped_pairs"] = dropped
        if cache is not None:
            metrics["reference/computed_pairs"] = cache.computed
            metrics["reference/reused_pairs"] = cache.reused
        return StageResult(metrics=metrics, artifacts={"model": ctx.artifact(ctx.dir / "model")})

    # -- references -------------------------------------------------------------------
    def _reference_cache(self, ctx: StageContext) -> ReferenceCache:
        if self.options.cache_dir:
            base = Path(self.options.cache_dir)
        else:
            base = Path(os.environ.get("ALIGNKIT_CACHE", Path.home() / ".cache" / "alignkit")) / "reference_logps"
        key = model_fingerprint(ctx.policy.name_or_path, ctx.policy.options)
        folder = base / key
        folder.mkdir(parents=True, exist_ok=True)
        return ReferenceCache(folder)

    @staticmethod
    def _pairs_used(task: DPOTask, settings: TrainerConfig) -> list[Pair]:
        """Only the pairs the configured steps will see need reference log-probs."""
        per_epoch = len(task.batches(0))
        needed = max(1, settings.max_steps * settings.grad_accum) if settings.max_steps > 0 else per_epoch * settings.epochs
        indices: list[int] = []
        epoch = 0
        while needed > 0:
            batches = task.batches(epoch)
            for batch in batches[:needed]:
                indices.extend(batch)
            needed -= len(batches)
            epoch += 1
        return [task.train[i] for i in dict.fromkeys(indices)]

    @staticmethod
    def _forward_reference(reference_model: Any):
        @torch.no_grad()
        def reference(pairs: Sequence[Pair]) -> tuple[torch.Tensor, torch.Tensor]:
            c, r, _, _ = pair_logps(reference_model, pairs)
            return c, r

        return reference

    @staticmethod
    def _adapter_reference(peft_model: Any):
        @torch.no_grad()
        def reference(pairs: Sequence[Pair]) -> tuple[torch.Tensor, torch.Tensor]:
            with peft_model.disable_adapter():
                c, r, _, _ = pair_logps(peft_model, pairs)
            return c, r

        return reference

    # -- KL(policy || reference) on held-out prompts --------------------------------------
    def _kl_estimate(self, ctx: StageContext, policy: Any, tokenizer: Any, reference_model: Any,
                     settings: TrainerConfig) -> dict[str, float]:
        n = self.options.kl_prompts
        prompts_ds = ctx.dataset("prompts", "eval")
        if n <= 0 or prompts_ds is None or len(prompts_ds) == 0:
            return {}
        prompts = [row["prompt"] for row in prompts_ds.select(range(min(n, len(prompts_ds))))]
        samples = sample_responses(policy, tokenizer, prompts, max_new_tokens=self.options.kl_max_new_tokens,
                                   seed=settings.seed)
        sequences = [s for s, _ in samples if sum(s.scored[1:]) > 0]
        if not sequences:
            return {}
        device = next(policy.parameters()).device
        reference = (reference_model or ctx.load_model("reference").model).to(device)
        policy.eval()
        with torch.no_grad():
            device = next(policy.parameters()).device
            p_sums, counts = sequence_logps(policy, pack(sequences).to(device))
            r_sums, _ = sequence_logps(reference, pack(sequences).to(device))
        kl_seq = (p_sums - r_sums)
        return {
            "eval/kl_per_sequence": float(kl_seq.mean()),
            "eval/kl_per_token": float(kl_seq.sum() / counts.sum().clamp(min=1)),
            "eval/kl_samples": len(sequences),
            "eval/sample_length": float(counts.float().mean()),
        }
