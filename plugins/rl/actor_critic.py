"""The trained pair: the policy and its critic (a value head), as one module.

One module means one ``accelerator.prepare``, one optimizer and one ``save_state`` for both,
so a checkpoint always holds a matching policy and critic. Forward passes run on packed
rows (``core.lm.pack``) and come back as [batch, time] grids over response tokens.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from alignkit.core.lm import Encoded, PackedBatch, hidden_states, pack

log = logging.getLogger("alignkit")


def _base(model: Any) -> Any:
    """The transformers model under peft / DDP wrappers."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def to_grid(flat: torch.Tensor, batch: PackedBatch, mask: torch.Tensor) -> torch.Tensor:
    """Per-token values of the packed targets, in packed order, as a [B, T] grid.

    A sequence's targets are contiguous and in order within the packed rows, so a stable
    sort by sequence index lines them up with the grid's row-major masked positions.
    """
    index = batch.sequence_index[batch.target_mask]
    order = torch.argsort(index, stable=True)
    grid = flat.new_zeros(mask.shape)
    return grid.masked_scatter(mask.bool().to(flat.device), flat[order])


def token_stats(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, temperature: float,
                with_entropy: bool, chunk_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of ``targets`` (and the entropies) under ``softmax(head(hidden) / temperature)``,
    a chunk of positions at a time so the full [N, vocabulary] tensor never lives at once."""
    logps, entropies = [], []
    for start in range(0, hidden.shape[0], chunk_size):
        logits = head(hidden[start:start + chunk_size]).float()
        if temperature != 1.0:
            logits = logits / temperature
        logps.append(-F.cross_entropy(logits, targets[start:start + chunk_size], reduction="none"))
        if with_entropy:
            log_p = torch.log_softmax(logits, dim=-1)
            entropies.append(-(log_p.exp() * log_p).sum(-1))
    if not logps:
        empty = hidden.new_zeros(0)
        return empty, (empty if with_entropy else None)
    return torch.cat(logps), (torch.cat(entropies) if with_entropy else None)


@dataclass
class ForwardOut:
    logprobs: torch.Tensor  # [B, T]
    values: torch.Tensor | None  # [B, T]
    entropy: torch.Tensor | None  # [B, T]


class ValueModel(torch.nn.Module):
    """A separate critic: a decoder backbone and a scalar head at every position."""

    def __init__(self, backbone: torch.nn.Module, head: torch.nn.Linear) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, batch: PackedBatch) -> torch.Tensor:
        out = self.backbone(input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=None,
                            use_cache=False)
        hidden = out.last_hidden_state.reshape(-1, out.last_hidden_state.shape[-1])[batch.target_mask]
        return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1).float()


def value_head(hidden_size: int, dtype: torch.dtype = torch.float32) -> torch.nn.Linear:
    """A zero-initialised head: every value starts at 0, so early advantages are the rewards."""
    head = torch.nn.Linear(hidden_size, 1, bias=True, dtype=dtype)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    return head


def critic_from_policy(policy: Any) -> ValueModel:
    """A copy of the policy's decoder with a fresh value head."""
    base = _base(policy)
    backbone = copy.deepcopy(base.get_decoder())
    backbone.requires_grad_(True)
    return ValueModel(backbone, value_head(base.config.hidden_size))


def critic_from_reward_model(reward_model: Any) -> ValueModel:
    """The reward model's backbone and scalar head (InstructGPT initialises the value function
    from the reward model): values start as the reward model's judgement of each prefix."""
    backbone = getattr(reward_model, reward_model.base_model_prefix)
    old = getattr(reward_model, "score", None) or getattr(reward_model, "classifier", None)
    head = value_head(reward_model.config.hidden_size)
    if isinstance(old, torch.nn.Linear):
        with torch.no_grad():  # an ensemble's K heads: their mean, the ensemble's mean reward
            head.weight.copy_(old.weight.float().mean(0, keepdim=True))
            if old.bias is not None:
                head.bias.copy_(old.bias.float().mean().reshape(1))
    else:
        log.warning("ppo: the reward model has no linear scoring head; the value head starts at 0")
    backbone.requires_grad_(True)
    return ValueModel(backbone, head)


class ActorCritic(torch.nn.Module):
    """The policy plus either a separate ``ValueModel`` or a value head on the policy's own
    hidden states (``critic=shared``: no second backbone, one forward gives both), or neither
    (RLOO, GRPO: the policy alone, called with ``with_values=False``)."""

    def __init__(self, policy: Any, critic: ValueModel | None = None, shared_head: torch.nn.Linear | None = None):
        super().__init__()
        if critic is not None and shared_head is not None:
            raise ValueError("ActorCritic takes a separate critic or a shared value head, not both")
        self.policy, self.critic, self.shared_head = policy, critic, shared_head

    def forward(self, batch: PackedBatch, mask: torch.Tensor, temperature: float = 1.0, with_values: bool = True,
                with_entropy: bool = False) -> ForwardOut:
        base = _base(self.policy)
        hidden = hidden_states(self.policy, batch)[batch.target_mask]
        logps, entropy = token_stats(base.get_output_embeddings(), hidden, batch.targets[batch.target_mask],
                                     temperature, with_entropy)
        values = None
        if with_values and (self.critic is not None or self.shared_head is not None):
            if self.shared_head is not None:
                values = self.shared_head(hidden.to(self.shared_head.weight.dtype)).squeeze(-1).float()
            else:
                values = self.critic(batch)
        return ForwardOut(
            logprobs=to_grid(logps, batch, mask),
            values=to_grid(values, batch, mask) if values is not None else None,
            entropy=to_grid(entropy, batch, mask) if entropy is not None else None,
        )


@torch.no_grad()
def reference_logprobs(model: Any, sequences: Sequence[Encoded], mask: torch.Tensor, temperature: float,
                       adapter: bool = False) -> torch.Tensor:
    """Log-probs of the sampled tokens under the frozen reference: a separate model, or the
    policy with its LoRA adapters switched off (``adapter=True``: no second copy in memory)."""
    device = next(_base(model).parameters()).device
    batch = pack(sequences).to(device)

    def run() -> torch.Tensor:
        base = _base(model)
        hidden = hidden_states(model, batch)[batch.target_mask]
        logps, _ = token_stats(base.get_output_embeddings(), hidden, batch.targets[batch.target_mask],
                               temperature, False)
        return to_grid(logps, batch, mask.to(device))

    if adapter:
        with model.disable_adapter():
            return run()
    return run()
