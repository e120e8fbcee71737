"""``preference_model=judge`` (direct AI rewards) on tiny-random: it keeps the preference-model
contract, a GRPO run asks the judge in batches and a second identical run asks it nothing, and
the reference mode compares each response with the starting policy's answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import alignkit.plugins.data.demo as demo_pkg
from alignkit.core.pipeline import run_pipeline
from alignkit.core.testing import FAST_OVERRIDES, PreferenceModelContract, compose
from alignkit.plugins.feedback.judges.local import LocalJudge

PROMPTS = Path(demo_pkg.__file__).parent / "prompts.jsonl"


class TestJudgeIsAPreferenceModel(PreferenceModelContract):
    name = "judge"
    overrides = ("preference_model.cache=false", "preference_model.batch_size=4")


@pytest.fixture
def judge_calls(monkeypatch):
    """Every batch of conversations the local judge model scores."""
    calls: list[int] = []
    original = LocalJudge.choice_probs

    def counted(self, conversations, labels=("A", "B")):
        calls.append(len(conversations))
        return original(self, conversations, labels)

    monkeypatch.setattr(LocalJudge, "choice_probs", counted)
    return calls


def grpo_with_judge(registry, run_dir, cache):
    cfg = compose([*FAST_OVERRIDES, "pipeline=grpo", "data=files", f"data.prompts={PROMPTS}", "preference_model=judge",
                   f"preference_model.cache_dir={cache}", "preference_model.batch_size=4", "trainer.batch_size=8",
                   "optimizer.max_new_tokens=6", "optimizer.eval_prompts=0", "optimizer.sample_every=0"], registry)
    cfg.pipeline.stages = [s for s in cfg.pipeline.stages if s.get("stage") != "evaluate"]
    rd = run_pipeline(cfg, run_dir, registry)
    return json.loads((rd.path / "summary.json").read_text())["stages"]["grpo"]["metrics"]


@pytest.mark.slow  # trains an on-policy optimizer for several steps (over 3 s)
def test_a_judge_rewarded_run_caches_and_batches_its_calls(registry, tmp_path, judge_calls):
    first = grpo_with_judge(registry, tmp_path / "one", tmp_path / "cache")
    asked = sum(judge_calls)
    assert asked == first["reward/cache_misses"] > 0 and first["reward/cache_hits"] + asked == 2 * 8
    assert max(judge_calls) <= 4 and len(judge_calls) < asked, "batched: up to batch_size conversations a call"
    judge_calls.clear()
    second = grpo_with_judge(registry, tmp_path / "two", tmp_path / "cache")
    assert judge_calls == [] and second["reward/cache_misses"] == 0, "the second run asked the judge nothing"
    assert second["reward/cache_hits"] == 2 * 8
    assert second["train/reward/mean"] == first["train/reward/mean"]


def test_reference_mode_compares_with_the_starting_policys_answer(stage_context, judge_calls):
    ctx = stage_context("preference_model=judge", "preference_model.mode=reference", "preference_model.cache=false",
                        "preference_model.reference_max_new_tokens=6")
    judge = ctx.preference_model()
    prompts = [[{"role": "user", "content": "What is 2 + 2?"}], [{"role": "user", "content": "Name a colour."}]]
    answers = judge.references(prompts)
    assert len(judge.references.answers) == 2 and all(isinstance(a, str) for a in answers)
    scores = judge.score([prompts[0], prompts[0], prompts[1]], [answers[0], "4", answers[1]])
    # a response identical to the reference answer: both orders are the same question, P = 0.5 exactly
    assert scores[0].item() == pytest.approx(0.5) and scores[2].item() == pytest.approx(0.5)
    assert 0.0 <= scores[1].item() <= 1.0
    assert judge.references(prompts) == answers and len(judge.references.answers) == 2  # generated once
    assert sum(judge_calls) == 3 * 2  # three pairs, each in both orders


def test_unknown_mode_is_an_error(stage_context):
    from alignkit.core import ConfigError

    with pytest.raises(ConfigError, match="preference_model.mode must be one of single, reference"):
        stage_context("preference_model=judge", "preference_model.mode=pairs").preference_model()
