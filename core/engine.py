"""The one training loop, on accelerate, used by every optimizer.

An optimizer describes *what* to train as a ``TrainTask`` (its batches and its loss);
the engine owns *how*: AdamW, the schedule, accumulation, clipping, mixed precision,
seeding, checkpoints and resume, the NaN guard, progress and metrics.
"""

from __future__ import annotations

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

from alignkit.core import checkpoints
from alignkit.core.checkpoints import TRAINER_STATE  # noqa: F401  (re-exported for plugins)
from alignkit.core.errors import ConfigError, TrainingDiverged

log = logging.getLogger("alignkit")


@dataclass
class TrainerConfig:
    """Defaults every training stage inherits (``trainer.*``); a stage may override them."""

    max_steps: int = 30
    epochs: int = 1  # used when max_steps <= 0
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_length: int = 256
    seed: int = 42
    checkpoint_every: int = 10  # 0: no mid-stage checkpoints
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

        A task may also define ``batch_weight(batch) -> float`` (``interfaces.WeightedBatches``:
        e.g. its scored tokens; it must add up over the examples of a batch) so that gradient
        accumulation and data parallelism weigh micro-batches and shards exactly like one larger batch.

        Under N processes a batch (a list of example indices) is the *global* batch: each
        process trains on its slice (``shard_batch``) and the gradients are all-reduced.
        ``evaluate`` runs on every process with the same result.
        """


@dataclass
class TrainOutcome:
    model: Any  # unwrapped (and for LoRA merged) model
    steps: int
    metrics: dict[str, float]
    state_dict: dict[str, Any] | None = None  # full weights gathered from FSDP / ZeRO-3 shards (main process)


def shard_batch(batch: Sequence[Any], rank: int, world: int) -> list[Any]:
    """This process's contiguous slice of a global batch (sizes differ by at most one)."""
    n = len(batch)
    return list(batch[rank * n // world:(rank + 1) * n // world])


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


def make_optimizer(params: torch.nn.Module | Sequence[Any], settings: TrainerConfig) -> torch.optim.Optimizer:
    """AdamW over a module's trainable parameters, or over parameter groups (a group may set its
    own ``lr``; e.g. RL's critic), fused where the device has the kernels."""
    if isinstance(params, torch.nn.Module):
        params = [p for p in params.parameters() if p.requires_grad]
    try:
        return torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay, fused=True)
    except (RuntimeError, TypeError):  # fused kernels missing for this device/dtype
        return torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, settings: TrainerConfig, total: int) -> Any:
    """``trainer.lr_scheduler`` over ``total`` optimizer steps, warmed up for ``warmup_ratio`` of them."""
    from transformers import get_scheduler

    return get_scheduler(settings.lr_scheduler, optimizer, num_warmup_steps=int(settings.warmup_ratio * total),
                         num_training_steps=total)


def progress_bar(settings: TrainerConfig, accelerator: Any, total: int, initial: int, desc: str) -> Any:
    """The stage's step bar on the main process (None elsewhere or with ``trainer.progress=false``)."""
    if not (settings.progress and accelerator.is_main_process):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)


def resume_state(accelerator: Any, checkpoint_dir: Path, stage: str) -> dict[str, Any] | None:
    """Load the newest verified checkpoint of ``checkpoint_dir`` into ``accelerator`` (damaged
    ones are set aside, core/checkpoints.py) and return the state saved with it; None: a fresh start."""
    latest = checkpoints.resume_point(checkpoint_dir)
    if latest is None:
        return None
    with checkpoints.loading(latest):
        accelerator.load_state(str(latest))
        state = checkpoints.read_state(latest)
    log.info("resuming stage %s from %s (step %d)", stage, latest, state["step"])
    if accelerator.is_main_process:
        print(f"alignkit: resuming stage '{stage}' at step {state['step']} from {latest}", file=sys.stderr)
    return state


def diverged(stage: str, loss: float, step: int, kept: str, advice: str) -> TrainingDiverged:
    """The error that stops a stage whose loss is no longer finite: where the last good state
    is (``kept``) and what to change (``advice``)."""
    return TrainingDiverged(f"stage '{stage}': the loss became {loss} at step {step + 1}. Training stopped; "
                            f"{kept}. {advice}, then rerun the same command to resume from it.")


def save_model(model: Any, tokenizer: Any, path: Path, state_dict: Mapping[str, Any] | None = None) -> None:
    """``save_pretrained`` into a temporary folder, then rename: never a half-written model.

    Every process calls it; the main process writes and the others wait for the folder.
    ``state_dict`` holds the weights when they were gathered from shards (``TrainOutcome``).
    """
    from alignkit.core import distributed

    if distributed.is_main_process():
        _save_model(model, tokenizer, path, state_dict)
    distributed.barrier()


def _save_model(model: Any, tokenizer: Any, path: Path, state_dict: Mapping[str, Any] | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        if state_dict is not None:
            model.save_pretrained(tmp, safe_serialization=True, state_dict=dict(state_dict))
        else:
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
        from accelerate.utils import DataLoaderConfiguration, set_seed

        self.settings = settings
        self.out_dir = Path(out_dir)
        self.stage = stage
        self.log_fn = log_fn or (lambda step, metrics: None)
        self.should_stop = should_stop
        if settings.num_threads > 0:
            torch.set_num_threads(settings.num_threads)
        # split_batches: ``batch_size`` is the global batch, so the schedule steps once per
        # optimizer step whatever the number of processes.
        self.accelerator = Accelerator(mixed_precision=settings.mixed_precision,
                                       cpu=not torch.cuda.is_available(),
                                       dataloader_config=DataLoaderConfiguration(split_batches=True))
        set_seed(settings.seed)

    @property
    def sharded(self) -> bool:
        """True when no process holds the whole model (FSDP, DeepSpeed ZeRO-3)."""
        from accelerate.utils import DistributedType

        acc = self.accelerator
        if acc.distributed_type == DistributedType.FSDP:
            return True
        if acc.distributed_type == DistributedType.DEEPSPEED:
            return acc.state.deepspeed_plugin.zero_stage == 3
        return False

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    def place(self, model: Any) -> Any:
        """Move ``model`` to this process's device (work before ``train``, e.g. reference
        log-probs, then runs on the GPU), unless the model will be sharded."""
        if not self.sharded:
            model.to(self.accelerator.device)
        return model

    def prepare_model(self, model: Any) -> Any:
        """Apply LoRA and gradient checkpointing as configured (before ``train``)."""
        self.place(model)
        if self.settings.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
        if self.settings.lora:
            if self.sharded:
                raise ConfigError("trainer.lora=true under FSDP or DeepSpeed ZeRO-3 is not supported: LoRA's "
                                  "trainable weights are small, so use DDP (launcher.config=ddp) or ZeRO-2")
            model = apply_lora(model, self.settings)
        return model

    def _total_steps(self, steps_per_epoch: int) -> int:
        if self.settings.max_steps > 0:
            return self.settings.max_steps
        return max(1, self.settings.epochs * steps_per_epoch)

    def train(self, model: Any, task: TrainTask) -> TrainOutcome:
        s = self.settings
        acc = self.accelerator
        rank, world = acc.process_index, acc.num_processes
        model.train()
        first_epoch = list(task.batches(0))
        if not first_epoch:
            raise ValueError(f"stage '{self.stage}' has no training batches")
        if world > 1 and min(len(b) for b in first_epoch) < world:
            raise ConfigError(
                f"stage '{self.stage}': trainer.batch_size is the global batch, split across {world} processes; "
                f"it must be at least {world} (the smallest batch holds {min(len(b) for b in first_epoch)} examples)")
        steps_per_epoch = max(1, len(first_epoch) // s.grad_accum)
        total = self._total_steps(steps_per_epoch)
        # The loss runs inside the wrapper's forward, so DDP / FSDP / DeepSpeed see every forward
        # (gradient all-reduce, parameter gathering) even though core.lm calls the decoder directly.
        wrapper = _TaskModule(model, task)
        optimizer = make_optimizer(wrapper, s)
        scheduler = make_scheduler(optimizer, s, total)
        self._configure_deepspeed(first_epoch, world)
        wrapper, optimizer, scheduler = acc.prepare(wrapper, optimizer, scheduler)

        step, epoch, cursor = 0, 0, 0
        state = resume_state(acc, self.checkpoint_dir, self.stage)
        if state is not None:
            step, epoch, cursor = state["step"], state["epoch"], state["cursor"]

        epoch_batches = first_epoch if epoch == 0 else list(task.batches(epoch))
        progress = progress_bar(s, acc, total, step, self.stage)
        final_metrics: dict[str, float] = {}
        window: list[Mapping[str, float]] = []
        last_log = time.perf_counter()
        stop = self.should_stop()
        try:
            while step < total and not stop:
                started = time.perf_counter()
                start_epoch, start_cursor = epoch, cursor
                step_batches = []
                for _ in range(s.grad_accum):  # the global micro-batches of this optimizer step
                    if cursor >= len(epoch_batches):
                        epoch, cursor = epoch + 1, 0
                        epoch_batches = list(task.batches(epoch))
                    step_batches.append(epoch_batches[cursor])
                    cursor += 1
                shards = [shard_batch(b, rank, world) for b in step_batches] if world > 1 else step_batches
                weights = _micro_weights(task, step_batches, shards, world)
                micro_metrics: list[Mapping[str, float]] = []
                step_loss, finite = 0.0, True
                for micro, batch in enumerate(shards):
                    sync = micro == len(shards) - 1
                    acc.gradient_state._set_sync_gradients(sync)  # DeepSpeed steps at the boundary only
                    context = acc.no_sync(wrapper) if not sync and world > 1 else _nullcontext()
                    with context:
                        with acc.autocast():
                            loss, metrics = wrapper(batch)
                        value = float(loss.detach())
                        finite = finite and math.isfinite(value)
                        # Every process runs backward even on a bad loss: the all-reduce needs them all.
                        acc.backward(loss * weights[micro])
                    micro_metrics.append({"loss": value, **metrics})
                    step_loss += value * weights[micro] / world
                if world > 1:  # one small all-reduce: the global loss, a bad loss anywhere, a stop request
                    flags = torch.tensor([step_loss, 0.0 if finite else 1.0, 1.0 if self.should_stop() else 0.0],
                                         dtype=torch.float64, device=acc.device)
                    flags = acc.reduce(flags, reduction="sum")
                    step_loss, finite, stop = float(flags[0]), bool(flags[1] == 0), bool(flags[2] > 0)
                else:
                    stop = self.should_stop()
                if not finite:
                    optimizer.zero_grad(set_to_none=True)
                    path = self._save_checkpoint(step, start_epoch, start_cursor)
                    raise diverged(self.stage, step_loss, step, f"the last good state is kept in {path}",
                                   "Lower trainer.learning_rate or check the data")
                grad_norm = None
                if s.max_grad_norm and s.max_grad_norm > 0:
                    grad_norm = acc.clip_grad_norm_(wrapper.parameters(), s.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                merged = _mean(micro_metrics)
                merged["loss"] = step_loss  # the global batch's loss, as one process would compute it
                merged["lr"] = scheduler.get_last_lr()[0]
                if grad_norm is not None:
                    merged["grad_norm"] = float(grad_norm)
                merged["step_seconds"] = time.perf_counter() - started
                window.append(merged)
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(loss=f"{merged['loss']:.4f}")
                if step % max(1, s.log_every) == 0 or step == total or stop:
                    record = _mean(window)
                    if world > 1:  # other metrics: the mean over the processes' slices
                        from accelerate.utils import gather_object

                        record = _mean(gather_object([record]))
                    now = time.perf_counter()
                    record["seconds_since_log"] = now - last_log
                    last_log = now
                    window = []
                    if acc.is_main_process:
                        self.log_fn(step, record)
                    final_metrics.update({f"train/{k}": v for k, v in record.items()})
                if s.eval_every and step % s.eval_every == 0 and step < total:
                    eval_metrics = self._evaluate(wrapper)
                    if eval_metrics and acc.is_main_process:
                        self.log_fn(step, eval_metrics)
                if s.checkpoint_every and step % s.checkpoint_every == 0 and step < total:
                    self._save_checkpoint(step, epoch, cursor)
        finally:
            if progress is not None:
                progress.close()
        eval_metrics = self._evaluate(wrapper)
        state_dict = None
        if self.sharded:  # gather the full weights once (a collective); the main process keeps them
            full = acc.get_state_dict(wrapper)
            if acc.is_main_process:
                state_dict = {k[len("model."):]: v for k, v in full.items() if k.startswith("model.")}
        unwrapped = acc.unwrap_model(wrapper).model
        unwrapped.train(False)
        if eval_metrics and acc.is_main_process:
            self.log_fn(step, eval_metrics)
        final_metrics.update(eval_metrics)
        final_metrics["steps"] = step
        if hasattr(unwrapped, "merge_and_unload"):
            unwrapped = unwrapped.merge_and_unload()
        return TrainOutcome(model=unwrapped, steps=step, metrics=final_metrics, state_dict=state_dict)

    def _evaluate(self, wrapper: Any) -> dict[str, float]:
        """The task's held-out metrics, on every process, through the wrapper (sharded weights)."""
        with torch.no_grad():
            metrics = dict(wrapper(None, evaluate=True))
        wrapper.train()
        return metrics

    def _configure_deepspeed(self, batches: Sequence[Any], world: int) -> None:
        """DeepSpeed wants its micro-batch size before ``prepare`` (it cannot infer it without a
        DataLoader); accumulation and clipping stay the engine's."""
        from accelerate.utils import DistributedType

        acc = self.accelerator
        if acc.distributed_type != DistributedType.DEEPSPEED:
            return
        config = acc.state.deepspeed_plugin.deepspeed_config
        config["train_micro_batch_size_per_gpu"] = max(1, math.ceil(len(batches[0]) / world))
        config["gradient_accumulation_steps"] = 1  # the engine accumulates (weights by scored tokens)
        config.pop("train_batch_size", None)
        if self.settings.max_grad_norm and config.get("gradient_clipping") in (None, "auto"):
            config["gradient_clipping"] = self.settings.max_grad_norm

    def _save_checkpoint(self, step: int, epoch: int, cursor: int) -> Path:
        """accelerate state plus our data position, sealed by a manifest (core/checkpoints.py)."""
        return checkpoints.save(self.accelerator, self.checkpoint_dir, step,
                                {"step": step, "epoch": epoch, "cursor": cursor}, self.settings.keep_checkpoints)


class _TaskModule(torch.nn.Module):
    """The model plus the task's loss as one module whose ``forward`` is the loss.

    accelerate wraps this module (DDP, FSDP, DeepSpeed), so every training forward and every
    evaluation passes through the wrapper's forward, as distributed training requires.
    """

    def __init__(self, model: Any, task: TrainTask) -> None:
        super().__init__()
        self.model = model
        self.task = task
        # FSDP's transformer auto-wrap and DeepSpeed's "auto" sizes read these from the model.
        self._no_split_modules = getattr(model, "_no_split_modules", None)
        if getattr(model, "config", None) is not None:
            self.config = model.config

    def forward(self, batch: Any = None, evaluate: bool = False) -> Any:
        if evaluate:
            return self.task.evaluate(self.model)
        return self.task.loss(self.model, batch)


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _micro_weights(task: TrainTask, batches: Sequence[Any], shards: Sequence[Any] | None = None,
                   world: int = 1) -> list[float]:
    """How much this process's part of each micro-batch counts in the step's loss.

    By the task's ``batch_weight`` (e.g. scored tokens) when it has one, else by examples, over
    the whole global step: accumulation over micro-batches and the split across ``world``
    processes then equal one large batch. DDP averages gradients over processes, hence the
    factor ``world``.
    """
    shards = batches if shards is None else shards
    from alignkit.core.interfaces import WeightedBatches

    weigh = task.batch_weight if isinstance(task, WeightedBatches) else None
    if weigh is None:
        if world == 1:
            return [1.0 / len(batches)] * len(batches)
        return [len(sh) / len(b) * world / len(batches) for b, sh in zip(batches, shards)]
    total = sum(float(weigh(b)) for b in batches) or 1.0
    return [float(weigh(sh)) * world / total for sh in shards]


def _mean(records: Sequence[Mapping[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    keys = {k for r in records for k in r}
    for key in keys:
        values = [float(r[key]) for r in records if key in r]
        values = [v for v in values if not math.isnan(v)] or values
        out[key] = sum(values) / len(values)
    return out
