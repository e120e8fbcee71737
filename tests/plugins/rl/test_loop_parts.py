"""The RL loop's own pure pieces: reward shaping (DAPO's overlong punishment), the options'
validation and defaults, and RLOO's sequence-level ratio (pinned by hand and to TRL 1.16)."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from alignkit.core import ConfigError
from alignkit.core.rl import PolicyLossInputs, aggregate
from alignkit.core.running_moments import RunningMoments
from alignkit.plugins.rl.options import RLOptions, schema
from alignkit.plugins.rl.pairwise import marked_pairs
from alignkit.plugins.rl.policy_losses import ppo_clip
from alignkit.plugins.rl.ratio_level import sequence_level
from alignkit.plugins.rl.shaping import overlong_penalty, shape_scores, tied_groups


def test_overlong_penalty_by_hand():
    # max_new_tokens 6, buffer 2: free up to 4 tokens, then (4 - length) / 2 * penalty, -penalty at 6
    lengths = torch.tensor([1, 4, 5, 6])
    assert overlong_penalty(lengths, 6, 2, 1.0).tolist() == [0.0, 0.0, -0.5, -1.0]
    assert overlong_penalty(lengths, 6, 2, 0.5).tolist() == [0.0, 0.0, -0.25, -0.5]
    assert overlong_penalty(lengths, 6, 0, 1.0).tolist() == [0.0, 0.0, 0.0, 0.0]  # off


def test_shaping_scales_penalises_then_clips():
    o = RLOptions(reward_scale=2.0, missing_eos_penalty=0.5, overlong_buffer=2, max_new_tokens=6, reward_clip=1.5)
    raw = torch.tensor([1.0, 1.0, -1.0])
    truncated = torch.tensor([False, True, True])
    lengths = torch.tensor([3, 6, 5])
    # 1*2 = 2 -> clip 1.5 | 1*2 - 0.5 - 1 = 0.5 | -1*2 - 0.5 - 0.5 = -3 -> clip -1.5
    assert shape_scores(o, raw, truncated, lengths, RunningMoments()).tolist() == [1.5, 0.5, -1.5]


def test_tied_groups_and_marked_pairs():
    assert tied_groups(torch.tensor([1.0, 1.0, 0.0, 2.0]), 2).tolist() == [True, False]
    advantages = torch.tensor([[0.0], [-1.0], [1.0], [0.0], [0.0], [0.0]])  # group 2 tied: no pair
    assert marked_pairs(advantages, 3) == [(2, 1)]


def test_options_name_the_key_and_map_the_old_aggregation_names():
    assert RLOptions(loss_aggregation="token").loss_aggregation == "token_mean"
    assert RLOptions(loss_aggregation="sequence").loss_aggregation == "sequence_mean"
    assert RLOptions(ppo_epochs=4).update_epochs == 4
    with pytest.raises(ConfigError, match="optimizer.loss_aggregation must be one of token_mean, sequence_mean"):
        RLOptions(loss_aggregation="sum")
    with pytest.raises(ConfigError, match="optimizer.ratio_level must be one of token, sequence"):
        RLOptions(ratio_level="group")
    with pytest.raises(ConfigError, match="optimizer.overlong_buffer"):
        RLOptions(max_new_tokens=6, overlong_buffer=7)
    with pytest.raises(ConfigError, match="dynamic_sampling .*samples_per_prompt"):
        RLOptions(dynamic_sampling=True, samples_per_prompt=1)


def test_each_algorithm_takes_its_defaults_from_its_config_file():
    assert schema("rloo")().ratio_level == "sequence"  # TRL 1.16's RLOOTrainer
    assert schema("grpo")().ratio_level == "token" and schema("grpo")().kl_penalty == "loss"
    ppo = schema("ppo")()
    assert (ppo.advantage, ppo.update_epochs, ppo.samples_per_prompt) == ("gae", 4, 1)
    dpo = schema("online_dpo")()
    assert (dpo.policy_loss, dpo.gamma, dpo.kl_coef, dpo.samples_per_prompt) == ("dpo_pairwise", 0.0, 0.0, 2)
    dapo = schema("dapo")()
    assert (dapo.clip_low, dapo.clip_high, dapo.dynamic_sampling, dapo.reference) == (0.2, 0.28, True, "none")


def _sequence_inputs():
    # row 0 (A = 1): log-ratios ln 1.1 on both tokens, summed ln 1.21; row 1 (A = -1): ln 0.9 on one of 3
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    old = torch.tensor([[-1.0, -2.0, 0.0], [-1.0, -1.0, -1.0]])
    new = old + torch.tensor([[math.log(1.1), math.log(1.1), 0.0], [0.0, math.log(0.9), 0.0]])
    advantages = torch.tensor([[1.0, 1.0, 0.0], [-1.0, -1.0, -1.0]])
    return new.requires_grad_(True), old, advantages, mask


def test_sequence_level_ratio_by_hand():
    new, old, advantages, mask = _sequence_inputs()
    out = sequence_level(ppo_clip)(PolicyLossInputs(new, old, advantages, mask, options={"cliprange": 0.2}))
    numerator, denominator = aggregate(out.per_token, mask, "sequence_sum_token_mean", 3)
    loss = numerator / denominator
    # row 0: ratio 1.1 * 1.1 = 1.21 -> max(-1.21, -1.2) = -1.2, clipped (a per-token or a mean ratio,
    # 1.1, would not be); row 1: ratio 0.9, inside -> max(0.9, 0.9) = 0.9; mean (-1.2 + 0.9) / 2
    assert loss.item() == pytest.approx(-0.15, abs=1e-6)
    assert out.per_token[:, 1:].abs().sum() == 0  # each response's loss sits on its first token
    assert out.metrics["clip_fraction"] == pytest.approx(0.5)
    loss.backward()
    # row 0 clipped: no gradient; row 1: d/dlogp_t of -A * exp(sum log-ratio) / 2 = 0.9 / 2 on each token
    assert new.grad.flatten().tolist() == pytest.approx([0.0, 0.0, 0.0, 0.45, 0.45, 0.45], abs=1e-6)


def test_sequence_level_ratio_matches_trl_rloo():
    pytest.importorskip("trl")
    from trl.trainer.rloo_trainer import RLOOTrainer

    new, old, advantages, mask = _sequence_inputs()
    out = sequence_level(ppo_clip)(PolicyLossInputs(new, old, advantages, mask, options={"cliprange": 0.2}))
    numerator, denominator = aggregate(out.per_token, mask, "sequence_sum_token_mean", 3)
    ours = numerator / denominator
    ours.backward()
    ours_grad = new.grad.clone()

    theirs_logps = new.detach().clone().requires_grad_(True)
    trainer = object.__new__(RLOOTrainer)  # only the attributes _compute_loss reads
    trainer.__dict__.update(
        _get_per_token_logps_and_entropies=lambda *a, **k: (theirs_logps, torch.zeros_like(theirs_logps), None),
        aux_loss_enabled=False, epsilon_low=0.2, epsilon_high=0.2,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        accelerator=SimpleNamespace(reduce=lambda x, reduction: x, gather=lambda x: x),
        model=SimpleNamespace(training=True))
    inputs = {"prompt_ids": torch.zeros(2, 1, dtype=torch.long), "prompt_mask": torch.ones(2, 1, dtype=torch.long),
              "completion_ids": torch.zeros(2, 3, dtype=torch.long), "completion_mask": mask.long(),
              "old_logps": (old * mask).sum(dim=1), "advantages": advantages[:, 0]}
    theirs = trainer._compute_loss(None, inputs)
    theirs.backward()
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)
    assert torch.allclose(ours_grad * mask, theirs_logps.grad * mask, atol=1e-6)
