"""The algorithms issue 19 added as compositions of parts (dr_grpo, dapo, gspo, reinforce_pp) run
from the composed config on tiny-random and log what they should; any part can be swapped from
the command line; an unknown part is an error before training; a new algorithm resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import alignkit.plugins.data.demo as demo_pkg
from alignkit.core import ConfigError
from alignkit.core.pipeline import run_pipeline
from alignkit.core.testing import FAST_OVERRIDES, StopAt, compose

PROMPTS = Path(demo_pkg.__file__).parent / "prompts.jsonl"


def varied(prompt, response):
    """Spread inside a group: newlines, then length, so no group ties."""
    return min(response.count("\n"), 6) / 6 + 0.01 * (len(response) % 7)


def half_tied(prompt, response):
    """A prompt whose text has an even length scores every response 0.5 (its group ties, no signal)."""
    return 0.5 if len(str(prompt)) % 2 == 0 else varied(prompt, response)


def run(registry, run_dir, pipeline, *overrides, fn="varied"):
    cfg = compose([*FAST_OVERRIDES, f"pipeline={pipeline}", "data=files", f"data.prompts={PROMPTS}",
                   "preference_model=rule", f"preference_model.fn={__name__}:{fn}", "optimizer.eval_prompts=0",
                   "trainer.batch_size=8", "trainer.max_steps=2", "optimizer.max_new_tokens=6",
                   "optimizer.temperature=0.7", "optimizer.sample_every=0", "optimizer.trainer.learning_rate=3e-4",
                   *overrides], registry)
    cfg.pipeline.stages = [s for s in cfg.pipeline.stages if s.get("stage") != "evaluate"]
    return run_pipeline(cfg, run_dir, registry), cfg


def steps_of(rd, stage):
    rows = [json.loads(line) for line in (rd.path / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["stage"] == stage and "reward/mean" in r]


COMMON = ("reward/mean", "reward_with_kl/mean", "rollout/kl_coef", "policy/entropy", "policy/clip_fraction",
          "policy/approx_kl", "policy/ratio_mean", "loss", "loss/policy", "advantage/abs_mean", "grad_norm", "lr",
          "rollout/sequence_tokens", "update/optimizer_steps")


@pytest.mark.parametrize(("pipeline", "parts", "has_kl"), [
    ("dr_grpo", {"advantage": "dr_grpo", "policy_loss": "ppo_clip", "loss_aggregation": "constant"}, True),
    ("gspo", {"advantage": "grpo", "policy_loss": "gspo", "loss_aggregation": "sequence_mean"}, False),
    ("reinforce_pp", {"advantage": "reinforce_pp", "policy_loss": "ppo_clip", "kl_penalty": "reward"}, True),
])
def test_a_new_algorithm_runs_from_its_config(registry, tmp_path, pipeline, parts, has_kl):
    rd, cfg = run(registry, tmp_path / "run", pipeline)
    assert {k: cfg.optimizer[k] for k in parts} == parts
    steps = steps_of(rd, pipeline)
    assert [s["step"] for s in steps] == [1, 2]
    for key in COMMON:
        assert key in steps[-1], key
    assert not any(k.startswith("value/") for k in steps[-1]), "no critic"
    assert ("rollout/kl" in steps[-1]) == has_kl
    if pipeline == "reinforce_pp":  # one response per prompt, the KL in the reward
        assert "reward/zero_std_fraction" not in steps[-1]
        assert steps[-1]["rollout/kl"] != 0 and steps[-1]["reward_with_kl/mean"] != steps[-1]["reward/mean"]
    assert (rd.path / f"02-{pipeline}" / "model" / "model.safetensors").exists()


@pytest.mark.slow  # trains DAPO for several steps (over 3 s)
def test_dapo_drops_tied_groups_refills_the_batch_and_shapes_overlong_responses(registry, tmp_path):
    rd, cfg = run(registry, tmp_path / "run", "dapo", "trainer.max_steps=3", "optimizer.overlong_buffer=2",
                  fn="half_tied")
    assert (cfg.optimizer.clip_low, cfg.optimizer.clip_high, cfg.optimizer.loss_aggregation) == (0.2, 0.28, "token_mean")
    steps = steps_of(rd, "dapo")
    assert len(steps) == 3
    for s in steps:
        assert s["rollout/responses_per_process"] == 8  # refilled to the whole batch
        assert "rollout/kl" not in s  # no reference, no KL
        # the tied groups that still train are the ones the extra rounds could not replace
        assert s["reward/zero_std_fraction"] == s["dynamic_sampling/tied_groups_kept"] / 2
        assert s["dynamic_sampling/extra_rounds"] <= 3
    assert sum(s["dynamic_sampling/dropped_groups"] for s in steps) >= 1
    assert sum(s["dynamic_sampling/refilled_groups"] for s in steps) >= 1
    # tiny-random never stops before max_new_tokens: every response has 6 tokens, 2 into the 2-token
    # buffer (6 - (6 - 2) = 2, 2 / 2 = 1), so it costs the whole overlong_penalty (1): shaped = raw - 1
    for s in steps:
        assert s["rollout/truncated_fraction"] == 1.0
        assert s["reward_with_kl/mean"] == pytest.approx(s["reward/mean"] - 1.0, abs=1e-6)


def test_any_part_can_be_swapped_from_the_command_line(registry, tmp_path):
    rd, cfg = run(registry, tmp_path / "run", "grpo", "optimizer.advantage=rloo", "optimizer.policy_loss=gspo")
    assert (cfg.optimizer.advantage, cfg.optimizer.policy_loss) == ("rloo", "gspo")
    steps = steps_of(rd, "grpo")
    assert len(steps) == 2 and steps[-1]["advantage/abs_mean"] > 0


@pytest.mark.parametrize(("override", "message"), [
    ("optimizer.advantage=grpoo", "unknown advantage_estimator 'grpoo'.*Did you mean 'grpo'"),
    ("optimizer.policy_loss=ppo_clp", "unknown policy_loss 'ppo_clp'.*Did you mean 'ppo_clip'"),
    ("optimizer.policy_loss=dpo_pairwise", "do not fit"),
    ("optimizer.ratio_level=sequence", "ratio_level=sequence takes one ratio per response"),
])
def test_a_wrong_part_is_an_error_before_training(registry, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        run(registry, tmp_path / "run", "grpo", override)
    metrics = tmp_path / "run" / "metrics.jsonl"
    assert not metrics.exists() or "reward/mean" not in metrics.read_text()  # no step ran


@pytest.mark.slow  # trains, stops and resumes (over 3 s)
def test_dapo_resumes_to_the_same_policy(registry, plugin_manager, tmp_path):
    fast = ("trainer.max_steps=3", "trainer.checkpoint_every=1", "trainer.batch_size=4",
            "optimizer.samples_per_prompt=2", "optimizer.max_new_tokens=4", "optimizer.overlong_buffer=2")
    straight, _ = run(registry, tmp_path / "straight", "dapo", *fast, fn="half_tied")
    killer = StopAt("dapo", 2)
    plugin_manager.register(killer)
    with pytest.raises(StopAt.Killed):
        run(registry, tmp_path / "stopped", "dapo", *fast, fn="half_tied")
    plugin_manager.unregister(killer)
    resumed, _ = run(registry, tmp_path / "stopped", "dapo", *fast, fn="half_tied")
    a = load_file(straight.path / "02-dapo" / "model" / "model.safetensors")
    b = load_file(resumed.path / "02-dapo" / "model" / "model.safetensors")
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name
    assert steps_of(straight, "dapo")[-1]["reward/mean"] == pytest.approx(steps_of(resumed, "dapo")[-1]["reward/mean"])
