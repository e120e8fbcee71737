"""``optimizer=rloo`` and ``optimizer=grpo`` end to end on tiny-random: they learn a rule reward
with PPO's metric names and no value model, run their update options, resume exactly, and
reject inconsistent options."""

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
    """The reward tests/plugins/ppo learns: the share of newlines in a 6-token response."""
    return min(response.count("\n"), 6) / 6


def run(registry, run_dir, optimizer, *overrides):
    cfg = compose([*FAST_OVERRIDES, f"pipeline={optimizer}", "data=files", f"data.prompts={PROMPTS}",
                   "preference_model=rule", f"preference_model.fn={__name__}:newlines", "optimizer.eval_prompts=0",
                   "trainer.batch_size=8", "optimizer.max_new_tokens=6", "optimizer.temperature=0.1",
                   "optimizer.trainer.learning_rate=3e-4", "optimizer.sample_every=0", *overrides], registry)
    cfg.pipeline.stages = [s for s in cfg.pipeline.stages if s.get("stage") != "evaluate"]
    return run_pipeline(cfg, run_dir, registry)


def steps_of(rd, stage):
    rows = [json.loads(line) for line in (rd.path / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["stage"] == stage and "reward/mean" in r]


PPO_METRICS = ("reward/mean", "reward/std", "reward_with_kl/mean", "reward_with_kl/std", "rollout/kl",
               "rollout/kl_coef", "policy/entropy", "policy/clip_fraction", "policy/approx_kl", "policy/ratio_mean",
               "loss/policy", "rollout/response_length_mean", "rollout/truncated_fraction", "update/optimizer_steps",
               "time/generate_seconds", "time/step_seconds", "time/generated_tokens_per_second", "grad_norm", "lr")


@pytest.mark.parametrize("optimizer", ["grpo", "rloo"])
@pytest.mark.slow  # trains an on-policy optimizer for several steps (over 3 s)
def test_critic_free_optimizers_raise_a_learnable_rule_reward(registry, tmp_path, optimizer):
    rd = run(registry, tmp_path / "run", optimizer, "trainer.max_steps=6")
    steps = steps_of(rd, optimizer)
    rewards = [s["reward/mean"] for s in steps]
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5, 6]
    assert rewards[0] < 0.35, rewards
    assert rewards[-1] >= 0.7 and rewards[-1] - rewards[0] >= 0.45, rewards
    last = steps[-1]
    for key in (*PPO_METRICS, "loss", "reward/zero_std_fraction", "advantage/abs_mean"):
        assert key in last, key
    assert not any(k.startswith("value/") or k == "loss/value" for k in last), "no value model, no value metrics"
    assert steps[0]["rollout/kl"] == pytest.approx(0.0, abs=1e-4) and last["rollout/kl"] > 0.1
    assert last["rollout/sequence_tokens"] > 8 * 6  # prompts + responses of the 8 samples
    if optimizer == "grpo":  # the k3 KL penalty sits in the loss
        assert "loss/kl" in last and last["policy/kl_in_loss"] > 0
    else:  # RLOO subtracts it from the score before the baseline
        assert "loss/kl" not in last and last["reward_with_kl/mean"] < last["reward/mean"]
    summary = json.loads((rd.path / "summary.json").read_text())["stages"][optimizer]
    assert summary["artifacts"] == {"model": f"02-{optimizer}/model"}
    assert (rd.path / f"02-{optimizer}" / "model" / "model.safetensors").exists()


def test_the_k_samples_of_a_step_share_their_prompt(registry, tmp_path):
    """Samples are grouped by prompt (the baseline's premise): 8 responses = 2 prompts x 4."""
    rd = run(registry, tmp_path / "run", "rloo", "trainer.max_steps=1", "optimizer.sample_every=1",
             "optimizer.samples_per_log=8", "optimizer.max_new_tokens=2")
    samples = [json.loads(line) for line in (rd.path / "02-rloo" / "samples.jsonl").read_text().splitlines()]
    prompts = [s["prompt"] for s in samples]
    assert len(prompts) == 8 and prompts[:4] == [prompts[0]] * 4 and prompts[4:] == [prompts[4]] * 4
    assert prompts[0] != prompts[4]


@pytest.mark.slow  # trains an on-policy optimizer for several steps (over 3 s)
def test_update_options_lora_and_no_reference(registry, tmp_path):
    rd = run(registry, tmp_path / "a", "grpo", "trainer.max_steps=2", "trainer.batch_size=4",
             "optimizer.samples_per_prompt=2", "trainer.grad_accum=2", "optimizer.update_epochs=2",
             "optimizer.mini_batch_size=2", "optimizer.loss_aggregation=sequence", "optimizer.scale_rewards=false",
             "optimizer.entropy_coef=0.01", "optimizer.max_new_tokens=4", "trainer.lora=true", "trainer.lora_r=4",
             "optimizer.eval_prompts=3")
    steps = steps_of(rd, "grpo")
    assert steps[0]["update/optimizer_steps"] == 4  # 2 epochs x 2 minibatches
    assert steps[0]["rollout/kl"] == pytest.approx(0.0, abs=1e-4)  # adapters start as the identity
    summary = json.loads((rd.path / "summary.json").read_text())["stages"]["grpo"]["metrics"]
    assert summary["eval/prompts"] == 3 and "eval/start_reward_mean" in summary
    assert not (rd.path / "02-grpo" / "model" / "adapter_config.json").exists()  # merged
    # no reference model at all: no KL is measured or paid
    rd = run(registry, tmp_path / "b", "rloo", "trainer.max_steps=1", "optimizer.reference=none",
             "optimizer.kl_coef=0", "optimizer.max_new_tokens=4", "optimizer.normalize_advantages=true")
    last = steps_of(rd, "rloo")[-1]
    assert "rollout/kl" not in last and last["reward_with_kl/mean"] == pytest.approx(last["reward/mean"])


@pytest.mark.slow  # trains an on-policy optimizer for several steps (over 3 s)
def test_a_stopped_run_resumes_to_the_same_policy(registry, plugin_manager, tmp_path):
    fast = ("trainer.max_steps=3", "trainer.checkpoint_every=1", "trainer.batch_size=4",
            "optimizer.samples_per_prompt=2", "optimizer.max_new_tokens=4", "optimizer.update_epochs=2")
    straight = run(registry, tmp_path / "straight", "grpo", *fast)
    killer = StopAt("grpo", 2)
    plugin_manager.register(killer)
    with pytest.raises(StopAt.Killed):
        run(registry, tmp_path / "stopped", "grpo", *fast)
    plugin_manager.unregister(killer)
    resumed = run(registry, tmp_path / "stopped", "grpo", *fast)
    a = load_file(straight.path / "02-grpo" / "model" / "model.safetensors")
    b = load_file(resumed.path / "02-grpo" / "model" / "model.safetensors")
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name


@pytest.mark.parametrize(("overrides", "message"), [
    (("trainer.batch_size=6",), "must be a multiple of optimizer.samples_per_prompt"),
    (("optimizer.samples_per_prompt=1",), "at least 2"),
    (("optimizer.kl_estimator=k1",), "kl_penalty=loss needs kl_estimator=k3 or k2"),
    (("optimizer.reference=none",), "reference=none leaves nothing to measure the KL against"),
    (("optimizer.loss_aggregation=sum",), "optimizer.loss_aggregation must be one of"),
])
def test_inconsistent_options_are_errors(registry, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        run(registry, tmp_path / "run", "grpo", "trainer.max_steps=1", *overrides)
