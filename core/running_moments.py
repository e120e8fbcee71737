"""Running mean and variance over batches (Chan et al.'s parallel update).

PPO's ``reward_normalize`` and the composite preference model's ``running`` standardiser both
keep these statistics; the state is a plain dict so a checkpoint can carry it.
"""

from __future__ import annotations

import math

import torch


class RunningMoments:
    """Running mean and (population) standard deviation of every value seen so far; part of
    PPO's checkpoint so a resumed run scales rewards the same."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 0.0

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().double().flatten()
        n = x.numel()
        if n == 0:
            return
        batch_mean, batch_var = float(x.mean()), float(x.var(unbiased=False))
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta ** 2 * self.count * n / total
        self.mean += delta * n / total
        self.var = m2 / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0))

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.count = float(state["mean"]), float(state["var"]), float(state["count"])
