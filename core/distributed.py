"""Which process am I, and wait for the others: the few facts stages need under ``accelerate launch``.

Read from the environment the launchers set (torchrun, accelerate, deepspeed: ``RANK``,
``WORLD_SIZE``), so a single-process run never touches ``torch.distributed``. Under N
processes the run directory is written by the main process only; everything else
(loading, training, evaluation) runs on every process and meets at ``barrier()``.
"""

from __future__ import annotations

import atexit
import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")


_solo = 0  # > 0 while the main process runs work alone (``run_on_main``): no collectives then


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def is_distributed() -> bool:
    """True under a multi-process launch, except inside work the main process runs alone."""
    return world_size() > 1 and not _solo


def is_main_process() -> bool:
    """True for the one process that writes the run directory (global rank 0)."""
    return rank() == 0


_shutdown_registered = False


def _shutdown() -> None:
    """Tear the process group down before the interpreter exits: left to interpreter
    finalisation, gloo's threads can abort a finished process ("terminate called without an
    active exception", exit -6) after its work succeeded."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _state() -> Any:
    global _shutdown_registered
    import torch
    from accelerate import PartialState

    # cpu=True when there is no GPU: the same backend (gloo) the engine's Accelerator will pick.
    state = PartialState(cpu=not torch.cuda.is_available())
    if not _shutdown_registered:
        atexit.register(_shutdown)
        _shutdown_registered = True
    return state


def barrier() -> None:
    """Every process waits here until all arrive (a no-op in a single process)."""
    if is_distributed():
        _state().wait_for_everyone()


def gather(obj: T) -> list[T]:
    """``obj`` from every process, in rank order, on every process (picklable objects)."""
    if not is_distributed():
        return [obj]
    from accelerate.utils import gather_object

    _state()
    return list(gather_object([obj]))


@contextmanager
def solo() -> Iterator[None]:
    """Inside, ``barrier`` and ``gather`` are no-ops: for work the main process does alone."""
    global _solo
    _solo += 1
    try:
        yield
    finally:
        _solo -= 1


def run_on_main(fn: Callable[[], T]) -> T:
    """``fn()`` on the main process only; every process returns its (picklable) result.

    For stages that are not data parallel (labelling, evaluation): the others wait meanwhile.
    ``fn`` must not train (no ``Engine``): a training step needs every process.
    """
    if not is_distributed():
        return fn()
    value = None
    if is_main_process():
        with solo():
            value = fn()
    return gather(value)[0]
