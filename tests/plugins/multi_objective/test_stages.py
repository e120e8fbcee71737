"""``preference_model=composite`` in the stages that score, on tiny-random: GRPO logs each member,
the combined score and lambda per step; evaluate reports each member for policy and reference;
best_of_n keeps each sample's member scores. Combined scores are checked against the members'."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import alignkit.plugins.data.demo as demo_pkg
from alignkit.core.pipeline import run_pipeline
from alignkit.core.testing import FAST_OVERRIDES, compose

PROMPTS = Path(demo_pkg.__file__).parent / "prompts.jsonl"


def words(prompt, response):
    return float(len(response.split()))


def excited(prompt, response):
    return 1.0 if "!" in response else 0.0


def unit_cost(prompt, response):
    return 1.0


def composite(combiner, **fns):
    body = ", ".join(f"{name}: {{name: rule, fn: '{__name__}:{fn}'}}" for name, fn in fns.items())
    return ["preference_model=composite", "~preference_model.members", "~preference_model.weights",
            f"+preference_model.members={{{body}}}", f"preference_model.combiner={combiner}"]


def rows_of(rd, stage):
    rows = [json.loads(line) for line in (rd.path / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["stage"] == stage]


@pytest.mark.slow  # trains an on-policy optimizer for several steps (over 3 s)
def test_grpo_and_evaluate_log_the_members_and_the_multiplier(registry, tmp_path):
    cfg = compose([*FAST_OVERRIDES, "pipeline=grpo", "data=files", f"data.prompts={PROMPTS}",
                   *composite("constrained", helpful="words", cost="unit_cost"),
                   "preference_model.cost_budget=0.25", "preference_model.lambda_lr=0.5",
                   "preference_model.lambda_init=0.5", "optimizer.eval_prompts=0", "trainer.batch_size=4",
                   "optimizer.samples_per_prompt=2",
                   "optimizer.max_new_tokens=6", "optimizer.sample_every=0"], registry)
    rd = run_pipeline(cfg, tmp_path / "run", registry)

    steps = [r for r in rows_of(rd, "grpo") if "reward/mean" in r]
    assert [s["step"] for s in steps] == [1, 2]
    # the cost (1.0) is over the budget (0.25): lambda 0.5, then 0.5 + 0.5 * 0.75 = 0.875
    assert [s["reward/lambda"] for s in steps] == pytest.approx([0.5, 0.875])
    for s in steps:
        lam, helpful = s["reward/lambda"], s["reward/members/helpful_mean"]
        assert s["reward/members/cost_mean"] == 1.0 and s["reward/cost_over_budget"] == pytest.approx(0.75)
        # mean of (words - lambda * 1) / (1 + lambda) is (mean words - lambda) / (1 + lambda)
        assert s["reward/combined_mean"] == pytest.approx((helpful - lam) / (1 + lam), abs=1e-5)
        assert s["reward/mean"] == pytest.approx(s["reward/combined_mean"], abs=1e-5)

    results = json.loads((rd.path / "03-evaluate" / "results.json").read_text())
    m = results["metrics"]
    assert set(results["scorers"]) >= {"composite", "composite/helpful", "composite/cost"}
    for who in ("policy", "reference"):  # one call for both: the same lambda (a new stage starts at 0.5)
        assert m[f"reward/composite/{who}_mean"] == pytest.approx(
            (m[f"reward/composite/helpful/{who}_mean"] - 0.5) / 1.5, abs=1e-5)
        assert m[f"reward/composite/cost/{who}_mean"] == 1.0
    samples = [json.loads(line) for line in (rd.path / "03-evaluate" / "samples.jsonl").read_text().splitlines()]
    assert [s["reward/composite/helpful"]["policy"] for s in samples] == [words(None, s["policy"]) for s in samples]
    report = (rd.path / "report.md").read_text()
    assert "reward `composite/helpful` (mean)" in report and "reward `composite/cost` (mean)" in report


def test_best_of_n_keeps_each_samples_member_scores(registry, tmp_path):
    cfg = compose([*FAST_OVERRIDES, "pipeline=rejection_sampling", "pipeline.rounds=1", "data=files",
                   f"data.prompts={PROMPTS}", *composite("weighted", words="words", excited="excited"),
                   "preference_model.normalise=none", "+preference_model.weights={words: 1.0, excited: 2.0}",
                   "best_of_n.prompt_filter=null", "best_of_n.prompts=3", "best_of_n.samples=4",
                   "best_of_n.max_new_tokens=8", "best_of_n.score_batch_size=5"], registry)
    cfg.pipeline.stages = [s for s in cfg.pipeline.stages if s.get("stage") == "best_of_n"]
    rd = run_pipeline(cfg, tmp_path / "run", registry)

    samples = [json.loads(line) for line in
               (rd.path / "01-best_of_n_1" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 * 4
    for s in samples:  # scored in chunks of 5: the parts still line up with their responses
        w, e = words(None, s["response"]), excited(None, s["response"])
        assert s["parts"] == {"words": w, "excited": e, "combined": pytest.approx(w + 2 * e)}
        assert s["score"] == pytest.approx(w + 2 * e)  # normalise=none: 1 * words + 2 * excited
    metrics = json.loads((rd.path / "summary.json").read_text())["stages"]["best_of_n_1"]["metrics"]
    assert metrics["best_of_n/words_mean"] == pytest.approx(sum(s["parts"]["words"] for s in samples) / 12)
    assert metrics["best_of_n/combined_mean"] == pytest.approx(metrics["best_of_n/score_mean"])


@pytest.mark.parametrize("optimizer", ["ppo", "online_dpo"])
@pytest.mark.slow  # trains an on-policy optimizer for several steps (over 3 s)
def test_other_rollout_optimizers_log_the_members(registry, tmp_path, optimizer):
    cfg = compose([*FAST_OVERRIDES, f"pipeline={optimizer}", "data=files", f"data.prompts={PROMPTS}",
                   *composite("constrained", helpful="words", cost="unit_cost"),
                   "preference_model.cost_budget=0.25", "preference_model.lambda_lr=0.5",
                   "preference_model.lambda_init=0.5", "optimizer.eval_prompts=0", "trainer.batch_size=4",
                   "optimizer.max_new_tokens=6", "optimizer.sample_every=0"], registry)
    cfg.pipeline.stages = [s for s in cfg.pipeline.stages if s.get("optimizer") == optimizer]
    rd = run_pipeline(cfg, tmp_path / "run", registry)
    steps = [r for r in rows_of(rd, optimizer) if "reward/mean" in r]
    assert [s["reward/lambda"] for s in steps] == pytest.approx([0.5, 0.875])
    for s in steps:
        assert s["reward/combined_mean"] == pytest.approx(
            (s["reward/members/helpful_mean"] - s["reward/lambda"]) / (1 + s["reward/lambda"]), abs=1e-5)
