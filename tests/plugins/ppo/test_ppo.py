"""The ``ppo`` optimizer end to end on tiny-random: it learns a rule reward, resumes exactly,
runs the LoRA / shared-critic / adaptive-KL paths, and stops clearly on a broken rule."""

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


def newlines(prompt, response):
    """A reward tiny-random can learn: at temperature 0.1 about a fifth of its responses are
    made of newlines, so PPO has a signal from the first step."""
    return min(response.count("\n"), 6) / 6


def broken(prompt, response):
    if "\n" in response or len(response) > 0:
        raise ZeroDivisionError("the rule divided by zero")
    return 0.0


def run_ppo(registry, run_dir, *overrides):
    cfg = compose([*FAST_OVERRIDES, "pipeline=ppo", "data=files", f"data.prompts={PROMPTS}", "preference_model=rule",
                   f"preference_model.fn={__name__}:newlines", "optimizer.eval_prompts=0", "trainer.batch_size=8",
                   "optimizer.max_new_tokens=6", "optimizer.temperature=0.1", "optimizer.trainer.learning_rate=2e-4",
                   "optimizer.sample_every=2", *overrides], registry)
    cfg.pipeline.stages = [s for s in cfg.pipeline.stages if s.get("stage") != "evaluate"]
    return run_pipeline(cfg, run_dir, registry)


def ppo_metrics(rd):
    rows = [json.loads(line) for line in (rd.path / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["stage"] == "ppo" and "reward/mean" in r]


@pytest.mark.slow  # trains an on-policy optimizer for several steps (over 3 s)
def test_ppo_raises_a_learnable_rule_reward(registry, tmp_path):
    rd = run_ppo(registry, tmp_path / "run", "trainer.max_steps=5", "optimizer.critic=shared", "optimizer.ppo_epochs=3")
    steps = ppo_metrics(rd)
    rewards = [s["reward/mean"] for s in steps]
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5]
    assert rewards[0] < 0.35, rewards
    assert rewards[-1] >= 0.7 and rewards[-1] - rewards[0] >= 0.45, rewards
    last = steps[-1]
    assert last["rollout/kl"] > 0.1  # it moved away from the reference, and says so
    for key in ("reward/std", "reward_with_kl/mean", "reward_with_kl/std", "rollout/kl_coef", "policy/entropy",
                "policy/clip_fraction", "policy/approx_kl", "loss/value", "value/explained_variance",
                "rollout/response_length_mean", "rollout/truncated_fraction", "time/generated_tokens_per_second"):
        assert key in last, key
    assert steps[0]["rollout/kl"] == pytest.approx(0.0, abs=1e-4)  # first rollout: policy == reference
    samples = [json.loads(line) for line in (rd.path / "02-ppo" / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {1, 2, 4, 5}
    assert set(samples[0]) == {"step", "prompt", "response", "reward", "kl", "truncated"}
    summary = json.loads((rd.path / "summary.json").read_text())
    assert summary["stages"]["ppo"]["artifacts"] == {"model": "02-ppo/model"}
    assert (rd.path / "02-ppo" / "model" / "model.safetensors").exists()


@pytest.mark.slow  # trains an on-policy optimizer for several steps (over 3 s)
def test_a_stopped_run_resumes_to_the_same_policy(registry, plugin_manager, tmp_path):
    fast = ("trainer.max_steps=3", "trainer.checkpoint_every=1", "trainer.batch_size=4",
            "optimizer.max_new_tokens=4", "optimizer.ppo_epochs=2", "optimizer.adaptive_kl=true",
            "optimizer.target_kl=0.01", "optimizer.kl_horizon=10", "optimizer.reward_normalize=true")
    straight = run_ppo(registry, tmp_path / "straight", *fast)
    killer = StopAt("ppo", 2)  # logged before step 2's checkpoint: the rerun resumes from step 1
    plugin_manager.register(killer)
    with pytest.raises(StopAt.Killed):
        run_ppo(registry, tmp_path / "stopped", *fast)
    plugin_manager.unregister(killer)
    checkpoints = tmp_path / "stopped" / "02-ppo" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-0000001"]
    resumed = run_ppo(registry, tmp_path / "stopped", *fast)
    a = load_file(straight.path / "02-ppo" / "model" / "model.safetensors")
    b = load_file(resumed.path / "02-ppo" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name
    # the KL controller's state came back too: the final coefficient matches
    coef = lambda rd: ppo_metrics(rd)[-1]["rollout/kl_coef"]  # noqa: E731
    assert coef(resumed) == pytest.approx(coef(straight)) and coef(straight) != pytest.approx(0.05)


def test_lora_shared_critic_and_update_options(registry, tmp_path):
    rd = run_ppo(registry, tmp_path / "run", "trainer.max_steps=2", "trainer.lora=true", "trainer.lora_r=4",
                 "trainer.batch_size=4", "trainer.grad_accum=2", "optimizer.critic=shared",
                 "optimizer.mini_batch_size=2", "optimizer.max_approx_kl=1e-5", "optimizer.missing_eos_penalty=0.5",
                 "optimizer.reward_clip=0.3", "optimizer.entropy_coef=0.01", "optimizer.eval_prompts=3",
                 "optimizer.max_new_tokens=4", "optimizer.trainer.learning_rate=1e-2")
    steps = ppo_metrics(rd)
    assert len(steps) == 2
    # the first minibatch moved the policy past the (tiny) approx-KL bound: the update stopped there
    assert steps[1]["update/early_stopped"] == 1.0 and steps[1]["update/optimizer_steps"] == 1
    assert steps[0]["rollout/kl"] == pytest.approx(0.0, abs=1e-4)  # adapters start as the identity
    assert steps[1]["rollout/kl"] != 0.0  # the reference (adapters off) differs from the policy now
    summary = json.loads((rd.path / "summary.json").read_text())["stages"]["ppo"]["metrics"]
    assert summary["eval/prompts"] == 3 and "eval/start_reward_mean" in summary
    model_dir = rd.path / "02-ppo" / "model"
    assert (model_dir / "model.safetensors").exists() and not (model_dir / "adapter_config.json").exists()


def test_a_raising_rule_stops_the_stage_naming_rule_and_sample(registry, tmp_path):
    with pytest.raises(ConfigError) as info:
        run_ppo(registry, tmp_path / "run", "trainer.max_steps=1", "trainer.batch_size=2",
                f"preference_model.fn={__name__}:broken", "optimizer.max_new_tokens=2")
    message = str(info.value)
    assert f"{__name__}:broken" in message and "ZeroDivisionError" in message and "prompt=" in message
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["stages"]["ppo"]["status"] == "failed"
    assert not (tmp_path / "run" / "02-ppo" / "model").exists()


def test_ppo_needs_a_preference_model_and_valid_options(registry, tmp_path):
    cfg = compose([*FAST_OVERRIDES, "pipeline=ppo", "data=files", f"data.prompts={PROMPTS}"], registry)
    cfg.pipeline.stages = [s for s in cfg.pipeline.stages if s.get("stage") != "evaluate"]
    with pytest.raises(ConfigError, match="needs a preference_model"):
        run_pipeline(cfg, tmp_path / "a", registry)
    with pytest.raises(ConfigError, match="optimizer.critic must be one of"):
        run_ppo(registry, tmp_path / "b", "optimizer.critic=twin")
    with pytest.raises(ConfigError, match="reference=adapter needs trainer.lora"):
        run_ppo(registry, tmp_path / "c", "optimizer.reference=adapter")
