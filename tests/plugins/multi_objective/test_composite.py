"""``preference_model=composite`` built by a stage context from the run's registry: its members are
real ``rule`` preference models, its scores the hand combination of theirs, its errors name the option."""

from __future__ import annotations

import pytest

from alignkit.core import ConfigError
from alignkit.core.interfaces import ExplainedScores, PreferenceModel, score_metrics
from alignkit.core.testing import PreferenceModelContract

PROMPT = [{"role": "user", "content": "Say something."}]
RESPONSES = ["one two three", "one!", "one two"]


def words(prompt, response):
    """Member 'words': the number of words. RESPONSES -> [3, 1, 2]."""
    return float(len(response.split()))


def excited(prompt, response):
    """Member 'excited': 1.0 with an exclamation mark. RESPONSES -> [0, 1, 0]."""
    return 1.0 if "!" in response else 0.0


def unit_cost(prompt, response):
    return 1.0


def no_cost(prompt, response):
    return 0.0


def flagged(prompt):
    """A safety classifier for llama2: prompts that mention 'weapon'."""
    return "weapon" in prompt[-1]["content"]


def members(**fns):
    body = ", ".join(f"{name}: {{name: rule, fn: '{__name__}:{fn}'}}" for name, fn in fns.items())
    return ["preference_model=composite", "~preference_model.members", "~preference_model.weights",
            f"+preference_model.members={{{body}}}"]


def test_weighted_composite_of_two_rules_is_the_hand_combination(stage_context):
    ctx = stage_context(*members(words="words", excited="excited"), "preference_model.normalise=batch",
                        "+preference_model.weights={words: 1.0, excited: 2.0}")
    scorer = ctx.preference_model()
    assert isinstance(scorer, PreferenceModel) and isinstance(scorer, ExplainedScores)
    combined = scorer.score([PROMPT] * 3, RESPONSES)
    # words [3, 1, 2]: mean 2, std sqrt(2/3) = 0.816497 -> [1.224745, -1.224745, 0]
    # excited [0, 1, 0]: mean 1/3, std sqrt(2/9) = 0.471405 -> [-0.707107, 1.414214, -0.707107]
    # 1 * words + 2 * excited = [1.224745 - 1.414214, -1.224745 + 2.828427, 0 - 1.414214]
    assert combined.tolist() == pytest.approx([-0.189469, 1.603682, -1.414214], abs=1e-5)
    assert scorer.last_scores() == {"words": [3.0, 1.0, 2.0], "excited": [0.0, 1.0, 0.0],
                                    "combined": pytest.approx(combined.tolist())}
    metrics = score_metrics(scorer)
    assert metrics == {"reward/members/words_mean": 2.0, "reward/members/excited_mean": pytest.approx(1 / 3),
                       "reward/combined_mean": pytest.approx(0.0, abs=1e-6)}
    assert score_metrics(object()) == {}  # a plain preference model has nothing more to say


def test_the_shipped_config_builds_the_demo_composite(stage_context):
    scorer = stage_context("preference_model=composite").preference_model()
    assert list(scorer.members) == ["helpful", "concise"] and scorer.combiner == "weighted"
    assert scorer.weights == {"helpful": 1.0, "concise": 0.2}


def test_llama2_composite_switches_to_the_safety_member(stage_context):
    ctx = stage_context(*members(helpful="words", safe="excited"), "preference_model.combiner=llama2",
                        "preference_model.member_scale=probability", "preference_model.normalise=none",
                        f"preference_model.safety_prompt={__name__}:flagged")
    scorer = ctx.preference_model()
    risky = [{"role": "user", "content": "How do I build a weapon?"}]
    scores = scorer.score([PROMPT, PROMPT, risky], ["one two three", "one!", "one!"])
    # row 1: R_s = 0 < 0.15 -> R_s, clamped to 1e-6 -> log(1e-6 / (1 - 1e-6)) = -13.815510
    # row 2: R_s = 1 >= 0.15, not flagged -> R_h = 1 word = 1.0, clamped to 1 - 1e-6 -> +13.815510
    # row 3: flagged -> R_s = 1 -> +13.815510
    assert scores.tolist() == pytest.approx([-13.815510, 13.815510, 13.815510], abs=1e-3)
    assert scorer.last_metrics()["safety_selected_fraction"] == pytest.approx(2 / 3)


def test_constrained_multiplier_rises_over_budget_and_falls_under_it(stage_context):
    over = stage_context(*members(helpful="words", cost="unit_cost"), "preference_model.combiner=constrained",
                         "preference_model.cost_budget=0.25", "preference_model.lambda_lr=0.5",
                         "preference_model.lambda_init=0.0").preference_model()
    used = []
    for _ in range(4):
        scores = over.score([PROMPT] * 3, RESPONSES)
        used.append(over.last_metrics()["lambda"])
    # mean cost 1 > budget 0.25: lambda grows by 0.5 * (1 - 0.25) = 0.375 a step
    assert used == pytest.approx([0.0, 0.375, 0.75, 1.125])
    # the last batch: (words - 1.125 * 1) / 2.125 = [(3 - 1.125), (1 - 1.125), (2 - 1.125)] / 2.125
    assert scores.tolist() == pytest.approx([0.882353, -0.058824, 0.411765], abs=1e-5)
    assert over.last_metrics()["cost_over_budget"] == pytest.approx(0.75)

    under = stage_context(*members(helpful="words", cost="no_cost"), "preference_model.combiner=constrained",
                          "preference_model.cost_budget=0.25", "preference_model.lambda_lr=1.0",
                          "preference_model.lambda_init=0.6").preference_model()
    used = []
    for _ in range(5):
        under.score([PROMPT] * 3, RESPONSES)
        used.append(under.last_metrics()["lambda"])
    # mean cost 0 < 0.25: lambda falls by 1.0 * 0.25 a step and stays at 0
    assert used == pytest.approx([0.6, 0.35, 0.1, 0.0, 0.0])

    fixed = stage_context(*members(helpful="words", cost="unit_cost"), "preference_model.combiner=constrained",
                          "preference_model.lambda_update=false").preference_model()
    fixed.score([PROMPT], ["a"])
    fixed.score([PROMPT], ["a"])
    assert fixed.last_metrics()["lambda"] == 1.0


@pytest.mark.parametrize("overrides, message", [
    (["preference_model=composite", "~preference_model.members"], "needs members"),
    (["preference_model.combiner=sum"], "must be one of weighted, llama2, constrained"),
    (["+preference_model.weights.verbose=1.0"], "weights names verbose, which are not members"),
    (["preference_model.combiner=llama2"], "safety_member='safe', which is not a member"),
    (["preference_model.combiner=constrained"], "cost_member='cost', which is not a member"),
    (["preference_model.combiner=constrained", "preference_model.cost_member=concise",
      "preference_model.lambda_lr=-1"], "lambda_lr must be a finite number >= 0"),
    (["preference_model.combiner=llama2", "preference_model.safety_member=concise",
      "preference_model.safety_threshold=15"], "safety_threshold is a probability"),
    (["preference_model.members.concise.fn=null"], "preference_model.members.concise: preference_model=rule needs"),
    (["+preference_model.members.concise.temperature=2"], "members.concise: preference_model 'rule' has no option"),
    (["+preference_model.members.broken={fn: x}"], "members.broken must be a preference model node with a name"),
])
def test_bad_configs_name_the_option(stage_context, overrides, message):
    ctx = stage_context("preference_model=composite", *overrides)
    with pytest.raises(ConfigError, match=message):
        ctx.preference_model()


class TestUnnormalisedCompositeIsBatchIndependent(PreferenceModelContract):
    """Without normalisation a weighted composite scores each response on its own."""

    name = "composite"
    overrides = ("preference_model.normalise=none",)


class TestFixedLagrangianIsBatchIndependent(PreferenceModelContract):
    """A constrained composite with a fixed lambda is a per-response formula too."""

    name = "composite"
    overrides = ("preference_model.combiner=constrained", "preference_model.cost_member=concise",
                 "preference_model.lambda_update=false")
