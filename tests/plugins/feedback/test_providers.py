"""Every feedback provider on a tiny model: verdicts, soft labels, the order swap, principles, the cache."""

import math

import pytest

from alignkit.core import ConfigError
from alignkit.plugins.feedback.judgement import FeedbackError

P = [{"role": "user", "content": "What is 2 + 3?"}]


def test_rule_provider_prefers_the_higher_score_with_ties(stage_ctx, rules_module):
    provider = stage_ctx("feedback=rule", "feedback.fn=fbtest_rules:says_good").feedback()
    got = provider.judge([P] * 3, ["good", "bad", "good!"], ["bad", "good", "good"])
    assert [j.preferred for j in got] == ["a", "b", "tie"]
    assert [j.probability for j in got] == [1.0, 0.0, 0.5]
    assert all(j.provider == "rule" and j.annotator == "fbtest_rules:says_good" for j in got)


def test_rule_provider_soft_labels_and_tolerance(stage_ctx, rules_module):
    provider = stage_ctx("feedback=rule", "feedback.fn=fbtest_rules:longer", "feedback.temperature=2.0",
                         "feedback.tolerance=1.0").feedback()
    got = provider.judge([P] * 3, ["abcd", "a", "ab"], ["a", "abcd", "a"])
    assert got[0].preferred == "a" and got[0].probability == pytest.approx(1 / (1 + math.exp(-1.5)))
    assert got[1].preferred == "b" and got[1].probability == pytest.approx(1 / (1 + math.exp(1.5)))
    assert got[2].preferred == "tie", "a score difference within the tolerance is a tie"


def test_rule_provider_with_the_demo_ground_truth(stage_ctx):
    provider = stage_ctx("feedback=rule").feedback()  # default fn: alignkit.plugins.rules.demo:arithmetic_graded
    got = provider.judge([P, P, P], ["2 + 3 = 5.", "2 + 3 = 6.", "2 + 3 = 9."], ["2 + 3 = 6.", "2 + 3 = 5.", "2 + 3 = 6."])
    # right beats wrong either way round, and of two wrong answers the closer one wins
    assert [j.preferred for j in got] == ["a", "b", "b"]


def test_rule_provider_names_a_bad_function(stage_ctx):
    with pytest.raises(ConfigError, match="no_such_module"):
        stage_ctx("feedback=rule", "feedback.fn=no_such_module:f").feedback()


def test_reward_model_provider_uses_the_preference_model(stage_ctx, rules_module):
    ctx = stage_ctx("feedback=reward_model", "preference_model=rule", "preference_model.fn=fbtest_rules:longer")
    got = ctx.feedback().judge([P, P], ["abc", "a"], ["a", "a"])
    assert got[0].preferred == "a" and got[0].probability == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert got[1].preferred == "tie" and got[1].probability == 0.5


def test_reward_model_provider_needs_a_preference_model(stage_ctx):
    with pytest.raises(ConfigError, match="preference_model"):
        stage_ctx("feedback=reward_model").feedback()


def test_dataset_provider_passes_labels_through_and_answers_known_pairs(stage_ctx):
    provider = stage_ctx("feedback=dataset").feedback()
    rows = provider.existing_preferences("train")
    assert len(rows) > 100 and set(rows[0]) == {"prompt", "chosen", "rejected", "strength", "source"}
    row = rows[0]
    got = provider.judge([row["prompt"]] * 2, [row["chosen"], row["rejected"]], [row["rejected"], row["chosen"]])
    assert [j.preferred for j in got] == ["a", "b"]
    with pytest.raises(FeedbackError, match="no label"):
        provider.judge([P], ["x"], ["y"])
    assert stage_ctx("feedback=dataset", "feedback.unknown=tie").feedback().judge([P], ["x"], ["y"])[0].preferred == "tie"


@pytest.fixture
def judge(stage_ctx, tmp_path):
    """The constitution judge on the tiny random model (the current policy), cached in tmp."""

    def _make(*extra):
        return stage_ctx("feedback=constitution", f"feedback.cache_dir={tmp_path / 'cache'}",
                         "feedback.max_length=512", *extra).feedback()

    return _make


PAIRS = ([P, [{"role": "user", "content": "Name a colour."}], [{"role": "user", "content": "Say hi."}]],
         ["2 + 3 = 5.", "Blue.", "Hi!"], ["It is 6.", "I cannot answer that.", "Hello there, friend."])


def test_constitution_local_judge_gives_soft_labels_and_records_both_orders(judge):
    provider = judge()
    got = provider.judge(*PAIRS)
    ids = {p.id for p in provider.constitution.principles}
    for j in got:
        assert 0.0 < j.probability < 1.0 and j.probability != 0.5, "a soft label from the A/B log-probs"
        assert j.principle in ids and j.provider == "constitution" and j.annotator == "tiny-random"
        assert j.orders is not None and j.probability == pytest.approx(sum(j.orders) / 2)
        assert j.preferred == ("a" if j.probability > 0.5 else "b")


def test_constitution_judge_is_symmetric_under_the_order_swap(judge):
    provider = judge("feedback.cache=false")
    prompts, a, b = PAIRS
    forward, backward = provider.judge(prompts, a, b), provider.judge(prompts, b, a)
    for f, r in zip(forward, backward):
        assert r.probability == pytest.approx(1.0 - f.probability, abs=1e-5)
        assert r.principle == f.principle, "the principle belongs to the pair, not to its order"
        assert r.position_consistent == f.position_consistent


def test_one_order_only_is_an_option(judge):
    provider = judge("feedback.both_orders=false", "feedback.cache=false")
    got = provider.judge(*PAIRS)
    assert all(j.orders is None for j in got)
    assert provider.backend.forward_calls == 1, "three comparisons, one batch"


@pytest.mark.slow  # a whole pipeline on the tiny model (over 3 s)
def test_principle_sampling_is_seeded_and_recorded(judge):
    prompts = [[{"role": "user", "content": f"Question {i}?"}] for i in range(16)]
    a, b = [f"Answer {i}." for i in range(16)], [f"Reply {i}!" for i in range(16)]
    fast = ("feedback.cache=false", "feedback.both_orders=false", "feedback.max_context_chars=40")
    seeded = judge(*fast, "feedback.seed=7")
    first = [j.principle for j in seeded.judge(prompts, a, b)]
    assert first == [seeded.constitution.sample(7, p, sorted([x, y])).id for p, x, y in zip(prompts, a, b)]
    assert len(set(first)) >= 3, "principles vary across comparisons"
    again = judge(*fast, "feedback.seed=7").judge(prompts[::-1], a[::-1], b[::-1])
    assert [j.principle for j in again][::-1] == first, "same seed: same principle per pair, in any order"
    other = [j.principle for j in judge(*fast, "feedback.seed=8").judge(prompts, a, b)]
    assert other != first


@pytest.mark.slow  # a whole pipeline on the tiny model (over 3 s)
def test_cache_answers_a_second_run_without_judge_calls(judge):
    first = judge()
    got = first.judge(*PAIRS)
    assert first.backend.forward_calls > 0 and first.misses == 3
    second = judge()  # a new provider, a new model: as in a resumed run or a sweep
    again = second.judge(*PAIRS)
    assert second.backend.forward_calls == 0 and second.hits == 3
    assert [(j.preferred, j.probability, j.principle, j.orders) for j in again] == \
           [(j.preferred, j.probability, j.principle, j.orders) for j in got]
    changed = judge("feedback.seed=3")  # another config is another cache key
    changed.judge(*PAIRS)
    assert changed.backend.forward_calls > 0


def test_rule_cache_counts_calls(stage_ctx, rules_module, tmp_path):
    args = ("feedback=rule", "feedback.fn=fbtest_rules:longer", "feedback.cache=true",
            f"feedback.cache_dir={tmp_path / 'rc'}")
    before = rules_module.CALLS["n"]
    stage_ctx(*args).feedback().judge([P, P], ["aa", "b"], ["a", "bbb"])
    assert rules_module.CALLS["n"] - before == 4
    stage_ctx(*args).feedback().judge([P, P], ["aa", "b"], ["a", "bbb"])
    assert rules_module.CALLS["n"] - before == 4, "the second run made no rule calls"


def test_constitution_critique_and_revision_on_the_tiny_model(judge):
    provider = judge("feedback.critique_max_new_tokens=6", "feedback.revision_max_new_tokens=6")
    principle = provider.constitution.principles[0]
    critiques = provider.critique([P], ["It is 6."], [principle], seed=1)
    revisions = provider.revise([P], ["It is 6."], critiques, [principle], seed=2)
    assert len(critiques) == len(revisions) == 1 and isinstance(revisions[0], str)
