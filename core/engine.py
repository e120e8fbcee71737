"""The one training loop, on accelerate, used by every optimizer.

An optimizer describes *what* to train as a ``TrainTask`` (its batches and its loss);
the engine owns *how*: AdamW, the schedule, accumulation, clipping, mixed precision,
seeding, checkpoints and resume, the NaN guard, progress and metrics.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import torch

from alignkit.core.errors import TrainingDiverged
from alignkit.core.rundir import atomic_write_json

log = logging.getLogger("alignkit")

TRAINER_STATE = "trainer_state.json"


@dataclass
class TrainerConfig:
    """Defaults every training stage inherits (``trainer.*``); a stage may override them."""

    max_steps: int = 30
    epochs: int = 1  # used when max_steps <= 0
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float = 2e-5
    weight_decay: float = 0.0
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_length: int = 256
    seed: int = 42
    checkpoint_every: int = 0  # 0: no mid-stage checkpoints
    keep_checkpoints: int = 2
    log_every: int = 1
    eval_every: int = 0  # 0: evaluate at the end only
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: str = "all-linear"
    mixed_precision: str = "no"  # no | bf16 | fp16 (accelerate)
    gradient_checkpointing: bool = False
    num_threads: int = 0  # 0: torch's default
    progress: bool = True


class TrainTask(Protocol):
    """What an optimizer hands the engine."""

    def batches(self, epoch: int) -> Sequence[Any]:
        """Every batch of one epoch, in a fixed order for a given epoch (resume relies on it)."""

    def loss(self, model: Any, batch: Any) -> tuple[torch.Tensor, Mapping[str, float]]:
        """The loss of one batch and the metrics to average and log."""

    def evaluate(self, model: Any) -> Mapping[str, float]:
        """Held-out metrics (may be empty).

        A task may also define ``batch_weight(batch) -> float`` (e.g. its scored tokens) so that
        gradient accumulation weighs micro-batches exactly like one larger batch.
        """


@dataclass
class TrainOutcome:
    model: Any  # unwrapped (and for LoRA merged) model
    steps: int
    metrics: dict[str, float]


def shuffled_batches(count: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Indices of ``count`` examples in batches, reshuffled per epoch, the same on every rerun."""
    import random

    order = list(range(count))
    random.Random(seed * 1000 + epoch).shuffle(order)
    return [order[i:i + batch_size] for i in range(0, count - batch_size + 1, batch_size)] or [order]


def apply_lora(model: Any, settings: TrainerConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                        target_modules=settings.lora_target_modules, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def make_optimizer(model: torch.nn.Module, settings: TrainerConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        return torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay, fused=True)
    except (RuntimeError, TypeError):  # fused kernels missing for this device/dtype
        return torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)


def _checkpoints(folder: Path) -> list[Path]:
    if not folder.exists():
        return []
    done = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / TRAINER_STATE).exists()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def save_model(model: Any, tokenizer: Any, path: Path) -> None:
    """``save_pretrained`` into a temporary folder, then rename: never a half-written model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class Engine:
    """Runs a ``TrainTask`` to ``max_steps`` with checkpoints in ``out_dir/checkpoints``."""

    def __init__(self, settings: TrainerConfig, out_dir: Path, *, stage: str = "train",
                 log_fn: Callable[[int, Mapping[str, float]], None] | None = None,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.settings = settings
        self.out_dir = Path(out_dir)
        self.stage = stage
        self.log_fn = log_fn or (lambda step, metrics: None)
        self.should_stop = should_stop
        if settings.num_threads > 0:
            torch.set_num_threads(settings.num_threads)
        self.accelerator = Accelerator(mixed_precision=settings.mixed_precision,
                                       cpu=not torch.cuda.is_available())
        set_seed(settings.seed)

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    def prepare_model(self, model: Any) -> Any:
        """Apply LoRA and gradient checkpointing as configured (before ``train``)."""
        if self.settings.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
        if self.settings.lora:
            model = apply_lora(model, self.settings)
        return model

    def _total_steps(self, steps_per_epoch: int) -> int:
        if self.settings.max_steps > 0:
            return self.settings.max_steps
        return max(1, self.settings.epochs * steps_per_epoch)

    def train(self, model: Any, task: TrainTask) -> TrainOutcome:
        from transformers import get_scheduler

        s = self.settings
        acc = self.accelerator
        model.train()
        optimizer = make_optimizer(model, s)
        first_epoch = list(task.batches(0))
        if not first_epoch:
            raise ValueError(f"stage '{self.stage}' has no training batches")
        steps_per_epoch = max(1, len(first_epoch) // (s.grad_accum * acc.num_processes))
        total = self._total_steps(steps_per_epoch)
        scheduler = get_scheduler(s.lr_scheduler, optimizer, num_warmup_steps=int(s.warmup_ratio * total),
                                  num_training_steps=total)
        model, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)

        step, epoch, cursor = 0, 0, 0
        existing = _checkpoints(self.checkpoint_dir)
        if existing:
            latest = existing[-1]
            acc.load_state(str(latest))
            state = json.loads((latest / TRAINER_STATE).read_text())
            step, epoch, cursor = state["step"], state["epoch"], state["cursor"]
            log.info("resuming stage %s from %s (step %d)", self.stage, latest, step)
            if acc.is_main_process:
                print(f"alignkit: resuming stage '{self.stage}' at step {step} from {latest}", file=sys.stderr)

        epoch_batches = first_epoch if epoch == 0 else list(task.batches(epoch))
        rank, world = acc.process_index, acc.num_processes
        progress = None
        if s.progress and acc.is_main_process:
            from tqdm.auto import tqdm

            progress = tqdm(total=total, initial=step, desc=self.stage, unit="step", dynamic_ncols=True)
        final_metrics: dict[str, float] = {}
        window: list[Mapping[str, float]] = []
        last_log = time.perf_counter()
        try:
            while step < total and not self.should_stop():
                started = time.perf_counter()
                micro_metrics: list[Mapping[str, float]] = []
                step_batches = []
                for _ in range(s.grad_accum):
                    if cursor + world > len(epoch_batches):
                        epoch, cursor = epoch + 1, 0
                        epoch_batches = list(task.batches(epoch))
                    step_batches.append(epoch_batches[cursor + rank])
                    cursor += world
                weights = _micro_weights(task, step_batches)
                for micro, batch in enumerate(step_batches):
                    sync = micro == len(step_batches) - 1
                    context = acc.no_sync(model) if not sync and world > 1 else _nullcontext()
                    with context:
                        with acc.autocast():
                            loss, metrics = task.loss(model, batch)
                        if not torch.isfinite(loss.detach()).all():
                            path = self._save_checkpoint(step, epoch, cursor - world * len(step_batches))
                            raise TrainingDiverged(
                                f"stage '{self.stage}': the loss became {loss.item()} at step {step + 1}. "
                                f"Training stopped; the last good state is kept in {path}. Lower "
                                f"trainer.learning_rate or check the data, then rerun the same command to "
                                f"resume from it."
                            )
                        acc.backward(loss * weights[micro])
                    micro_metrics.append({"loss": float(loss.detach()), **metrics})
                grad_norm = None
                if s.max_grad_norm and s.max_grad_norm > 0:
                    grad_norm = acc.clip_grad_norm_(model.parameters(), s.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                merged = _mean(micro_metrics)
                merged["lr"] = scheduler.get_last_lr()[0]
                if grad_norm is not None:
                    merged["grad_norm"] = float(grad_norm)
                merged["step_seconds"] = time.perf_counter() - started
                window.append(merged)
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(loss=f"{merged['loss']:.4f}")
                if step % max(1, s.log_every) == 0 or step == total:
                    record = _mean(window)
                    now = time.perf_counter()
                    record["seconds_since_log"] = now - last_log
                    last_log = now
                    window = []
                    if acc.is_main_process:
                        self.log_fn(step, record)
                    final_metrics.update({f"train/{k}": v for k, v in record.items()})
                if s.eval_every and step % s.eval_every == 0 and step < total:
                    eval_metrics = dict(task.evaluate(acc.unwrap_model(model)))
                    model.train()
                    if eval_metrics and acc.is_main_process:
                        self.log_fn(step, eval_metrics)
                if s.checkpoint_every and step % s.checkpoint_every == 0 and step < total:
                    self._save_checkpoint(step, epoch, cursor)
        finally:
            if progress is not None:
                progress.close()
        unwrapped = acc.unwrap_model(model)
        eval_metrics = dict(task.evaluate(unwrapped))
        unwrapped.train(False)
        if eval_metrics and acc.is_main_process:
            self.log_fn(step, eval_metrics)
        final_metrics.update(eval_metrics)
        final_metrics["steps"] = step
        if hasattr(unwrapped, "merge_and_unload"):
            unwrapped = unwrapped.merge_and_unload()
        return TrainOutcome(model=unwrapped, steps=step, metrics=final_metrics)

    def _save_checkpoint(self, step: int, epoch: int, cursor: int) -> Path:
        """accelerate state plus our data position, renamed into place when complete."""
        acc = self.accelerator
        final = self.checkpoint_dir / f"step-{step:07d}"
        if acc.is_main_process:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        tmp = self.checkpoint_dir / f".tmp-step-{step:07d}"
        if acc.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        acc.save_state(str(tmp))
        if acc.is_main_process:
            atomic_write_json(tmp / TRAINER_STATE, {"step": step, "epoch": epoch, "cursor": cursor})
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            for old in _checkpoints(self.checkpoint_dir)[: -max(1, self.settings.keep_checkpoints)]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _micro_weights(task: TrainTask, batches: Sequence[Any]) -> list[float]:
    """How much each micro-batch's mean loss counts in the step: by the task's ``batch_weight``
    (e.g. scored tokens) when it has one, so accumulation equals one larger batch."""
    weigh = getattr(task, "batch_weight", None)
    if weigh is None:
        return [1.0 / len(batches)] * len(batches)
    raw = [float(weigh(b)) for b in batches]
    total = sum(raw) or 1.0
    return [w / total for w in raw]


def _mean(records: Sequence[Mapping[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    keys = {k for r in records for k in r}
    for key in keys:
        values = [float(r[key]) for r in records if key in r]
        values = [v for v in values if not math.isnan(v)] or values
        out[key] = sum(values) / len(values)
    return out
