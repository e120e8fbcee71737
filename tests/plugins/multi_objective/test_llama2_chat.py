"""``pipeline=llama2_chat``: two reward models from one pipeline, each on its own preference set, read by the
members of a composite by the stage that trained them; the whole recipe end to end on tiny-random; a multirun
over the combiner and its comparison report."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from alignkit.core import ConfigError
from alignkit.core.pipeline import RunContext, StageContext, run_pipeline
from alignkit.core.rundir import RunDir
from alignkit.core.testing import FAST_OVERRIDES, compose
from alignkit.core.types import StageResult

# the recipe at its smallest: one rejection-sampling round, two PPO steps, short answers
TINY = ("pipeline=llama2_chat", "pipeline.rounds=1", "reward.eval_batch_size=4", "best_of_n.prompts=4",
        "best_of_n.samples=2", "best_of_n.max_new_tokens=8", "optimizer.max_new_tokens=8",
        "optimizer.eval_prompts=0", "optimizer.sample_every=0", "optimizer.ppo_epochs=1",
        "optimizer.trainer.max_steps=2", "trainer.batch_size=4", "preference_model.normalise=none",
        "evaluate.sycophancy_prompts=0")


def stage_context(registry, tmp_path, data_options=None, previous=None, *overrides):
    cfg = compose([*FAST_OVERRIDES, *overrides], registry)
    run = RunContext(cfg, registry, RunDir(tmp_path / "run", pipeline="llama2_chat"))
    return StageContext(run=run, name="reward_safe", index=3, dir=run.run_dir.path / "03-reward_safe",
                        config=OmegaConf.create({}), trainer=cfg.trainer, policy=run.model_spec(),
                        previous=dict(previous or {}), data_options=data_options)


def sources(ctx):
    rows = [*ctx.dataset("preferences", "train"), *ctx.dataset("preferences", "eval")]
    return {row["source"].rsplit("/", 1)[0] for row in rows}, len(rows)


@pytest.mark.slow  # a whole stage on the tiny model (over 3 s)
def test_a_stage_reads_its_own_preference_set(registry, tmp_path):
    # data=demo: the run's pairs are every family's; a stage's own options pick the helpful or harmless set
    assert sources(stage_context(registry, tmp_path)) == (
        {"alignkit-demo/arithmetic", "alignkit-demo/capitals", "alignkit-demo/conversions", "alignkit-demo/definitions",
         "alignkit-demo/refusals", "alignkit-demo/strings"}, 400)
    assert sources(stage_context(registry, tmp_path, {"preferences": "helpful"})) == ({"alignkit-demo/helpful"}, 50)
    assert sources(stage_context(registry, tmp_path, {"preferences": "harmless"})) == ({"alignkit-demo/harmless"}, 50)

    # an earlier stage's `preferences` artifact (AI labels) wins over the data, but not over the stage's own choice
    labels = tmp_path / "run" / "02-label" / "preferences"
    labels.mkdir(parents=True)
    pair = {"prompt": [{"role": "user", "content": "Hi"}], "chosen": "Hello!", "rejected": "...", "source": "label"}
    (labels / "train.jsonl").write_text(json.dumps(pair) + "\n")
    previous = {"label": StageResult(artifacts={"preferences": "02-label/preferences"})}
    assert [r["source"] for r in stage_context(registry, tmp_path, None, previous).dataset("preferences", "train")] \
        == ["label"]
    ctx = stage_context(registry, tmp_path, {"preferences": "harmless"}, previous)
    assert sources(ctx) == ({"alignkit-demo/harmless"}, 50)

    # data=files: the stage's own file, the run's other options (eval_fraction) kept
    own = tmp_path / "safe.jsonl"
    own.write_text("".join(json.dumps({**pair, "chosen": f"Hello {i}!", "source": "mine/x"}) + "\n" for i in range(10)))
    ctx = stage_context(registry, tmp_path, {"preferences": str(own)}, None, "data=files", "data.eval_fraction=0.2")
    assert len(ctx.dataset("preferences", "train")) == 8 and len(ctx.dataset("preferences", "eval")) == 2

    with pytest.raises(ConfigError, match="stage 'reward_safe' reads its own data .*preferences must be one of "
                                          "mixed, helpful, harmless, not 'harmles'"):
        stage_context(registry, tmp_path, {"preferences": "harmles"}).dataset("preferences", "train")


def test_the_pre_run_check_names_a_wrong_stage_or_data_option(registry):
    from alignkit.core.preflight import preflight

    cfg = compose([*FAST_OVERRIDES, "pipeline=llama2_chat", "preference_model.members.safe.stage=reward_saf"], registry)
    cfg.pipeline.stages[1].data = {"preferencs": "helpful"}
    with pytest.raises(ConfigError) as err:
        preflight(cfg, registry)
    message = str(err.value)
    assert "stage 'reward_helpful' data: data source 'demo' has no option 'preferencs' (did you mean 'preferences'?)" \
        in message
    assert ("preference_model.members.safe.stage=reward_saf: no stage is named 'reward_saf' (did you mean "
            "'reward_safe'?); the stages that run optimizer 'reward': reward_helpful, reward_safe") in message


def jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def llama2_rule(helpful: float, safe: float, threshold: float = 0.15) -> float:
    """Llama 2's R_c on logits with normalise=none: the safety logit when sigmoid(safe) < 0.15, else the helpful one."""
    return safe if 1 / (1 + math.exp(-safe)) < threshold else helpful


@pytest.mark.slow  # the whole seven-stage recipe
def test_llama2_chat_runs_end_to_end(registry, tmp_path):
    cfg = compose([*FAST_OVERRIDES, *TINY], registry)
    rd = run_pipeline(cfg, tmp_path / "run", registry)
    stages = json.loads((rd.path / "summary.json").read_text())["stages"]
    assert [(name, s["status"]) for name, s in stages.items()] == [
        ("sft", "completed"), ("reward_helpful", "completed"), ("reward_safe", "completed"),
        ("best_of_n_1", "completed"), ("sft_1", "completed"), ("ppo", "completed"), ("evaluate", "completed")]
    # each reward model trained on its own set: 50 pairs, 5 held out
    for name in ("reward_helpful", "reward_safe"):
        assert stages[name]["metrics"]["data/train_pairs"] == 45 and stages[name]["metrics"]["data/eval_pairs"] == 5

    # best_of_n logs each member per sample; the combined score is Llama 2's rule of the two (normalise=none)
    samples = jsonl(rd.path / "04-best_of_n_1" / "samples.jsonl")
    assert len(samples) == 4 * 2
    for s in samples:
        parts = s["parts"]
        assert parts["combined"] == pytest.approx(llama2_rule(parts["helpful"], parts["safe"]), abs=1e-6)

    # each member scores with the reward model of the stage it names (not the newest one for both)
    from alignkit.plugins.reward.bradley_terry import RewardModel

    prompts, answers = [s["prompt"] for s in samples], [s["response"] for s in samples]
    for member, stage in (("helpful", "02-reward_helpful"), ("safe", "03-reward_safe")):
        model = RewardModel.from_pretrained(rd.path / stage / "reward_model", device="cpu")
        assert model.score(prompts, answers).tolist() == pytest.approx([s["parts"][member] for s in samples],
                                                                         abs=1e-5)

    # PPO logs both members, the combined score and the share that used the safety score, every step
    steps = [r for r in jsonl(rd.path / "metrics.jsonl") if r["stage"] == "ppo" and "reward/mean" in r]
    assert len(steps) == 2
    for step in steps:
        fraction = step["reward/safety_selected_fraction"]
        assert 0.0 <= fraction <= 1.0
        assert step["reward/combined_mean"] == pytest.approx(step["reward/mean"], abs=1e-5)
        if fraction == 0.0:  # every response used R_h: the combined mean is the helpful member's
            assert step["reward/combined_mean"] == pytest.approx(step["reward/members/helpful_mean"], abs=1e-5)
        if fraction == 1.0:
            assert step["reward/combined_mean"] == pytest.approx(step["reward/members/safe_mean"], abs=1e-5)

    # evaluate: both rewards (and their combination per answer), refusals and over-refusals, against the SFT model
    results = json.loads((rd.path / "07-evaluate" / "results.json").read_text())
    metrics = results["metrics"]
    assert results["reference"].endswith("01-sft/model") and results["policy"].endswith("06-ppo/model")
    for key in ("reward/composite/helpful/policy_mean", "reward/composite/safe/policy_mean",
                "reward/composite/helpful/reference_mean", "reward/composite/safe/reference_mean",
                "safety/refusal_harmful_policy", "safety/over_refusal_policy", "safety/refusal_harmful_reference",
                "safety/over_refusal_reference"):
        assert key in metrics, key
    for s in jsonl(rd.path / "07-evaluate" / "samples.jsonl"):
        for who in ("policy", "reference"):
            helpful, safe = s["reward/composite/helpful"][who], s["reward/composite/safe"][who]
            assert s["reward/composite"][who] == pytest.approx(llama2_rule(helpful, safe), abs=1e-5)


@pytest.mark.slow  # two runs of the recipe in a subprocess (about twice the test above)
def test_a_multirun_over_the_combiner_compares_each_members_score(tmp_path):
    """`alignkit -m pipeline=llama2_chat preference_model.combiner=weighted,llama2`, then `alignkit report`."""
    sweep = tmp_path / "sweep"
    exe = Path(sys.executable).parent / "alignkit"
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    overrides = [o for o in (*FAST_OVERRIDES, *TINY) if not o.startswith("pipeline=")]
    proc = subprocess.run([str(exe), "-m", "pipeline=llama2_chat", *overrides,
                           "preference_model.combiner=weighted,llama2", f"hydra.sweep.dir={sweep}"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # weighted with normalise=none and no weights: each step's combined mean is helpful + safe, exactly
    steps = [r for r in jsonl(sweep / "0" / "metrics.jsonl") if r["stage"] == "ppo" and "reward/mean" in r]
    assert steps
    for step in steps:
        assert step["reward/combined_mean"] == pytest.approx(
            step["reward/members/helpful_mean"] + step["reward/members/safe_mean"], abs=1e-5)

    proc = subprocess.run([str(exe), "report", str(sweep)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (sweep / "comparison.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| run |"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert "preference_model.combiner" in cells and "reward/composite/helpful/policy_mean" in cells
    assert {"composite", "composite/safe", "refusal (harmful)", "over-refusal"} <= set(cells), cells
    for n, combiner in enumerate(("weighted", "llama2")):
        row = next(line for line in text.splitlines() if line.startswith(f"| {n} |"))
        assert f"| {combiner} |" in row
        evaluation = json.loads((sweep / str(n) / "summary.json").read_text())["stages"]["evaluate"]["metrics"]
        values = dict(zip(cells, (c.strip() for c in row.strip("|").split("|"))))
        from alignkit.plugins.evaluation.report import fmt

        assert values["composite/safe"] == fmt(evaluation["reward/composite/safe/policy_mean"])
        assert values["reward/composite/helpful/policy_mean"] == fmt(evaluation["reward/composite/helpful/policy_mean"])
