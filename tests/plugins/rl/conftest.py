"""TRL 1.16's GRPO loss, called on given per-token inputs: the reference the RL parts are pinned to."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch


@pytest.fixture(scope="session")
def trl_grpo_loss():
    """``loss(loss_type, logprobs, old_logprobs, advantages, mask, ...) -> (loss, metrics)``: what
    ``trl.GRPOTrainer._compute_loss`` returns for these per-token log-probs (its model call is
    replaced by them), in one process without gradient accumulation. Skips without ``trl``."""
    pytest.importorskip("trl")
    from trl.trainer.grpo_trainer import GRPOTrainer

    def loss(loss_type: str, logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
             mask: torch.Tensor, *, level: str = "token", ref_logprobs: torch.Tensor | None = None, beta: float = 0.0,
             epsilon: float = 0.2, epsilon_high: float | None = None, max_completion_length: int | None = None):
        trainer = object.__new__(GRPOTrainer)  # only the attributes _compute_loss reads
        trainer.__dict__.update(
            _get_per_token_logps_and_entropies=lambda *a, **k: (logprobs, torch.zeros_like(logprobs), None),
            aux_loss_enabled=False, top_entropy_quantile=1.0, off_policy_mask_threshold=None, use_vllm=False,
            importance_sampling_level=level, beta=beta, loss_type=loss_type, epsilon_low=epsilon,
            epsilon_high=epsilon if epsilon_high is None else epsilon_high, current_gradient_accumulation_steps=1,
            max_completion_length=max_completion_length or mask.shape[1], _entropy_bonus_enabled=False,
            _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
            args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1),
            accelerator=SimpleNamespace(num_processes=1, reduce=lambda x, reduction: x, gather=lambda x: x,
                                        gather_for_metrics=lambda x: x),
            model=SimpleNamespace(training=True),
        )
        rows, width = mask.shape
        inputs = {"prompt_ids": torch.zeros(rows, 1, dtype=torch.long), "prompt_mask": torch.ones(rows, 1, dtype=torch.long),
                  "completion_ids": torch.zeros(rows, width, dtype=torch.long), "completion_mask": mask.long(),
                  "advantages": advantages, "old_per_token_logps": old_logprobs,
                  "ref_per_token_logps": ref_logprobs, "num_items_in_batch": mask.sum()}
        value = trainer._compute_loss(None, inputs)
        return value, {k: v[-1] for k, v in trainer._metrics["train"].items()}

    return loss


@pytest.fixture
def random_batch():
    """``random_batch(seed, lengths, width, spread)``: a micro-batch as the loop sees it, right-padded
    response mask, old and reference log-probs, one advantage per response, and the policy's new
    log-probs twice (two leaves with the gradient: ours and TRL's)."""

    def make(seed: int, lengths: list[int], width: int, spread: float = 0.3) -> SimpleNamespace:
        torch.manual_seed(seed)
        rows = len(lengths)
        mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).float()
        old = -1 - torch.rand(rows, width)
        ref = old + 0.2 * torch.randn(rows, width)
        advantages = torch.randn(rows)
        new = (old + spread * torch.randn(rows, width)).requires_grad_()
        return SimpleNamespace(mask=mask, old=old, ref=ref, advantages=advantages, new=new,
                               trl_new=new.detach().clone().requires_grad_())

    return make
