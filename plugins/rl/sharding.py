"""Rollouts split across processes (``accelerate launch``, ``launcher.num_processes=N``).

Generation is most of an RL step, so under N processes each one samples, scores and trains on
its own contiguous slice of the step's prompts instead of all of them. What needs the whole
batch is gathered: reward shaping and advantages (group baselines, whitening) are computed on
the gathered scores, each minibatch's loss is normalised by the token count of all processes,
and the logged metrics describe the global batch. With the same ``generation_batch_size`` (a
divisor of each process's slice) every chunk is sampled with the same seed as in one process,
so N processes train on exactly the rollouts one process would, and reach the same weights.

In one process every helper here is the identity.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from alignkit.core import distributed as D
from alignkit.core.errors import ConfigError


def layout() -> tuple[int, int]:
    """(number of processes, this process's rank); (1, 0) outside a multi-process launch."""
    if not D.is_distributed():
        return 1, 0
    return D.world_size(), D.rank()


def local_slice(items: Sequence[Any], what: str) -> list[Any]:
    """This process's contiguous share of ``items`` (all of them in one process)."""
    world, rank = layout()
    if len(items) % world:
        raise ConfigError(f"{what} ({len(items)}) must divide evenly among the {world} processes")
    size = len(items) // world
    return list(items[rank * size:(rank + 1) * size])


def first_chunk(local_count: int, chunk: int) -> int:
    """The global number of this process's first generation chunk: chunk c is sampled with the
    seed of chunk c in one process when ``chunk`` divides ``local_count``."""
    _, rank = layout()
    chunk = chunk if chunk > 0 else local_count
    return rank * -(-local_count // chunk)


def gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """The per-process tensors concatenated in rank order (on the CPU), the same on every process."""
    if layout()[0] == 1:
        return tensor
    return torch.cat([t.to(tensor.dtype) for t in D.gather(tensor.detach().cpu())]).to(tensor.device)


def mine(global_tensor: torch.Tensor, local_count: int) -> torch.Tensor:
    """This process's rows of a tensor gathered with ``gather_cat``."""
    _, rank = layout()
    return global_tensor[rank * local_count:(rank + 1) * local_count]


def global_sum(value: float) -> float:
    return float(sum(D.gather(float(value)))) if layout()[0] > 1 else float(value)


def global_max(value: float) -> float:
    return float(max(D.gather(float(value)))) if layout()[0] > 1 else float(value)


def mean_over_processes(record: dict[str, float], weight: float = 1.0) -> dict[str, float]:
    """Each key's ``weight``-weighted mean over the processes (a minibatch record: every process
    then takes the same early-stopping decision and logs the same numbers)."""
    if layout()[0] == 1:
        return record
    parts = D.gather((dict(record), float(weight)))
    total = sum(w for _, w in parts) or 1.0
    keys = [k for k in record]
    return {k: sum(r.get(k, 0.0) * w for r, w in parts) / total for k in keys}


class ProcessReducer:
    """``core.rl.BatchReducer`` over every process of the launch: an estimator's batch-wide
    statistics (whitening, a global mean) then equal one process's on the whole batch."""

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        if layout()[0] == 1:
            return value
        parts = D.gather(value.detach().double().cpu())
        return sum(parts[1:], parts[0]).to(value.device, value.dtype)


# -- models placed on the main process only (optimizer.reward_placement / reference_placement = rank0) --

PLACEMENTS = ("every_rank", "rank0")


def computed_on_main(fn: Callable[[list[Any]], torch.Tensor], items: Sequence[Any]) -> torch.Tensor:
    """``fn`` over every process's ``items`` (in rank order), run on the main process alone, where
    the model it needs lives; returns this process's rows of the result (on the CPU).

    Every process must call it at the same point: it gathers the items and shares the result.
    """
    world, rank = layout()
    if world == 1:
        return fn(list(items))
    parts = D.gather(list(items))
    shares = None
    if rank == 0:
        out = torch.as_tensor(fn([item for part in parts for item in part])).detach().cpu()
        shares = list(torch.split(out, [len(part) for part in parts]))
    return D.gather(shares)[0][rank]


class MainProcessScorer:
    """A preference model that only the main process loads (``reward_placement=rank0``): every
    process's responses are scored there in one call and each gets its own scores back. Saves
    one reward-model copy per extra process at the cost of the others waiting while it scores."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self.model = build() if layout()[1] == 0 else None

    def score(self, prompts: Sequence[Any], responses: Sequence[str]) -> torch.Tensor:
        def score_all(pairs: list[Any]) -> torch.Tensor:
            scores = self.model.score([p for p, _ in pairs], [r for _, r in pairs])
            return torch.as_tensor(scores, dtype=torch.float32).reshape(-1)

        return computed_on_main(score_all, list(zip(prompts, responses)))

    def __getattr__(self, name: str) -> Any:  # cache counters etc. of the wrapped model (main process)
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name) if self.model is not None else None


def sum_over_processes(record: dict[str, float]) -> dict[str, float]:
    """Each key's sum over the processes (a key some process lacks counts 0 there); one collective."""
    if layout()[0] == 1:
        return dict(record)
    parts = D.gather(dict(record))
    return {k: sum(r.get(k, 0.0) for r in parts) for k in sorted({k for r in parts for k in r})}
