"""The frozen reference the KL is measured against (and online DPO's log-ratios).

Three ways to hold it (``optimizer.reference``): ``copy``, a frozen copy of the starting policy;
``adapter``, the policy itself with its LoRA adapters switched off (no second copy in memory);
``none``, no reference at all. Under N processes the copy may live on the main process alone
(``optimizer.reference_placement=rank0``), which then computes every process's log-probs.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from alignkit.core.engine import TrainerConfig
from alignkit.core.errors import ConfigError
from alignkit.plugins.rl import sharding as S
from alignkit.plugins.rl.actor_critic import reference_logprobs
from alignkit.plugins.rl.options import RLOptions
from alignkit.plugins.rl.rollout import Rollout, response_mask


class Reference:
    """The configured reference; ``logprobs`` answers for a rollout."""

    def __init__(self, o: RLOptions, settings: TrainerConfig, policy: Any, accelerator: Any) -> None:
        mode = o.reference
        if mode == "auto":
            mode = "adapter" if settings.lora else "copy"
        if mode == "adapter" and not settings.lora:
            raise ConfigError("optimizer.reference=adapter needs trainer.lora=true")
        self.mode = mode
        self.on_main = mode == "copy" and o.reference_placement == "rank0"
        self.model = None
        if mode == "copy" and (not self.on_main or accelerator.is_main_process):
            # before the policy gets its LoRA adapters or a wrapper: the starting weights, frozen
            self.model = copy.deepcopy(policy).eval().requires_grad_(False)

    @property
    def exists(self) -> bool:
        return self.mode != "none"

    def to(self, device: Any) -> "Reference":
        if self.model is not None:
            self.model.to(device)
        return self

    def logprobs(self, policy: Any, rollout: Rollout, mask: torch.Tensor, temperature: float) -> torch.Tensor:
        """The reference's log-probs of the rollout's response tokens, [B, T] like ``mask``: the
        policy with its adapter off, this process's copy, or the main process's copy."""
        if not self.on_main:
            adapter = self.model is None
            return reference_logprobs(policy if adapter else self.model, rollout.sequences, mask, temperature,
                                      adapter=adapter)

        def on_main(sequences: list) -> torch.Tensor:
            lengths = torch.tensor([sum(s.scored) for s in sequences], dtype=torch.long)
            full = response_mask(lengths).to(mask.device)
            return reference_logprobs(self.model, sequences, full, temperature, adapter=False)

        rows = S.computed_on_main(on_main, rollout.sequences)
        return rows[:, :mask.shape[1]].to(mask.device)
