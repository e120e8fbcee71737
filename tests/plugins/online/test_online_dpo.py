"""``optimizer=online_dpo`` on tiny-random: pairs are each prompt's best and worst fresh sample,
the first step's loss is DPO's at policy == reference, a learnable rule reward rises, ties are
skipped or kept, a stopped run resumes exactly, bad options are errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import alignkit.plugins.data.demo as demo_pkg
from alignkit.core import ConfigError
from alignkit.core.pipeline import run_pipeline
from alignkit.core.testing import FAST_OVERRIDES, StopAt, compose
from alignkit.plugins.rl.advantages import best_vs_worst_pairs as online_pairs

PROMPTS = Path(demo_pkg.__file__).parent / "prompts.jsonl"


def newlines(prompt, response):
    """The reward the critic-free tests learn: the share of newlines in a 6-token response."""
    return min(response.count("\n"), 6) / 6


def constant(prompt, response):
    return 0.5


def run(registry, run_dir, *overrides, fn="newlines"):
    cfg = compose([*FAST_OVERRIDES, "pipeline=online_dpo", "data=files", f"data.prompts={PROMPTS}",
                   "preference_model=rule", f"preference_model.fn={__name__}:{fn}", "optimizer.eval_prompts=0",
                   "trainer.batch_size=8", "optimizer.max_new_tokens=6", "optimizer.temperature=0.1",
                   "optimizer.trainer.learning_rate=1e-3", "optimizer.sample_every=0", *overrides], registry)
    cfg.pipeline.stages = [s for s in cfg.pipeline.stages if s.get("stage") != "evaluate"]
    return run_pipeline(cfg, run_dir, registry)


def steps_of(rd):
    rows = [json.loads(line) for line in (rd.path / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["stage"] == "online_dpo" and "reward/mean" in r]


def test_pairs_are_the_first_best_and_first_worst_of_each_group():
    scores = torch.tensor([0.2, 0.9, 0.9, 0.1,   # best: row 1 (first of the two 0.9s), worst: row 3
                           0.5, 0.5, 0.5, 0.5,   # all equal: no preference
                           0.0, 1.0, 0.0, 0.3])  # best row 9, worst row 8
    assert online_pairs(scores, 4) == [(1, 3), (9, 8)]
    assert online_pairs(scores, 4, ties="keep") == [(1, 3), (4, 5), (9, 8)]
    assert online_pairs(torch.tensor([1.0, 0.0, 0.0, 1.0]), 2) == [(0, 1), (3, 2)]
    with pytest.raises(ValueError, match="groups of 4"):
        online_pairs(torch.zeros(6), 4)


@pytest.mark.slow  # trains an on-policy optimizer for several steps (over 3 s)
def test_online_dpo_learns_a_rule_reward_from_fresh_pairs(registry, tmp_path):
    rd = run(registry, tmp_path / "run", "trainer.max_steps=8", "optimizer.samples_per_prompt=4",
             "optimizer.sample_every=1", "optimizer.samples_per_log=4")
    steps = steps_of(rd)
    rewards = [s["reward/mean"] for s in steps]
    assert [s["step"] for s in steps] == list(range(1, 9))
    first = steps[0]
    # step 1: the policy is the reference, so every log-ratio is 0 and the loss is -log sigmoid(0)
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert first["rewards/margin"] == pytest.approx(0.0, abs=1e-5) and first["rollout/kl"] == pytest.approx(0, abs=1e-4)
    assert first["pairs/trained"] <= 2 and first["update/optimizer_steps"] == 1
    assert rewards[-1] - rewards[0] >= 0.3, rewards
    trained = [s for s in steps if s["pairs/trained"]][-1]  # (a step whose answers all scored the same trains nothing)
    assert trained["step"] > 1 and trained["rollout/kl"] > 0.1 and trained["rewards/margin"] > 0
    assert trained["loss"] < math.log(2)
    for key in ("reward/std", "reward/pair_margin", "reward/zero_std_fraction", "rewards/chosen", "rewards/rejected",
                "rewards/accuracy", "logps/chosen", "logps/rejected", "rollout/response_length_mean",
                "rollout/truncated_fraction", "rollout/sequence_tokens", "time/generate_seconds", "time/step_seconds",
                "grad_norm", "lr"):
        assert key in trained, key
    # samples.jsonl holds the trained pairs: chosen then rejected, one prompt, chosen scored higher
    samples = [json.loads(line) for line in (rd.path / "02-online_dpo" / "samples.jsonl").read_text().splitlines()]
    pair = [s for s in samples if s["step"] == trained["step"]][:2]
    assert pair[0]["prompt"] == pair[1]["prompt"] and pair[0]["reward"] > pair[1]["reward"]
    assert pair[0]["reward"] == pytest.approx(newlines(None, pair[0]["response"]), abs=1e-4)
    assert (rd.path / "02-online_dpo" / "model" / "model.safetensors").exists()


@pytest.mark.slow  # trains an on-policy optimizer for several steps (over 3 s)
def test_ties_are_skipped_or_kept(registry, tmp_path):
    rd = run(registry, tmp_path / "skip", "trainer.max_steps=2", fn="constant")
    steps = steps_of(rd)
    assert [s["pairs/trained"] for s in steps] == [0, 0] and [s["update/optimizer_steps"] for s in steps] == [0, 0]
    assert "rollout/kl" not in steps[-1]
    start = load_file(rd.path / "02-online_dpo" / "model" / "model.safetensors")
    kept = run(registry, tmp_path / "keep", "trainer.max_steps=2", "optimizer.ties=keep", fn="constant")
    steps = steps_of(kept)
    assert [s["pairs/trained"] for s in steps] == [4, 4] and steps[-1]["update/optimizer_steps"] == 1
    trained = load_file(kept.path / "02-online_dpo" / "model" / "model.safetensors")
    assert any(not torch.equal(start[k], trained[k]) for k in start)  # ties kept: the first answer was pushed up


@pytest.mark.slow  # trains an on-policy optimizer for several steps (over 3 s)
def test_variants_lora_and_micro_batches(registry, tmp_path):
    rd = run(registry, tmp_path / "ipo", "trainer.max_steps=2", "optimizer.loss_type=ipo", "trainer.grad_accum=2",
             "trainer.lora=true", "trainer.lora_r=4", "optimizer.eval_prompts=3", "optimizer.ties=keep")
    first = steps_of(rd)[0]
    assert first["loss"] == pytest.approx((1 / (2 * 0.1)) ** 2, rel=1e-4)  # IPO at h = 0: (0 - 1/(2 beta))^2
    assert first["rollout/kl"] == pytest.approx(0.0, abs=1e-4)  # adapters start as the identity
    summary = json.loads((rd.path / "summary.json").read_text())["stages"]["online_dpo"]["metrics"]
    assert summary["eval/prompts"] == 3 and "eval/start_reward_mean" in summary
    rd = run(registry, tmp_path / "simpo", "trainer.max_steps=1", "optimizer.loss_type=simpo",
             "optimizer.reference=none", "optimizer.ties=keep")
    assert "rollout/kl" not in steps_of(rd)[0]


@pytest.mark.slow  # trains an on-policy optimizer for several steps (over 3 s)
def test_a_stopped_run_resumes_to_the_same_policy(registry, plugin_manager, tmp_path):
    fast = ("trainer.max_steps=3", "trainer.checkpoint_every=1", "trainer.batch_size=4", "optimizer.max_new_tokens=4",
            "optimizer.ties=keep")
    straight = run(registry, tmp_path / "straight", *fast)
    killer = StopAt("online_dpo", 2)
    plugin_manager.register(killer)
    with pytest.raises(StopAt.Killed):
        run(registry, tmp_path / "stopped", *fast)
    plugin_manager.unregister(killer)
    resumed = run(registry, tmp_path / "stopped", *fast)
    a = load_file(straight.path / "02-online_dpo" / "model" / "model.safetensors")
    b = load_file(resumed.path / "02-online_dpo" / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("overrides, message", [
    (("optimizer.samples_per_prompt=1",), "at least 2"),
    (("optimizer.samples_per_prompt=3",), "multiple of"),
    (("optimizer.ties=random",), "optimizer.ties must be one of"),
    (("optimizer.loss_type=kto",), "optimizer.loss_type must be one of"),
    (("optimizer.reference=none",), "loss_type=simpo"),
    (("optimizer.beta=0",), "beta must be > 0"),
])
def test_inconsistent_options_are_errors(registry, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        run(registry, tmp_path / "run", "trainer.max_steps=1", *overrides)
