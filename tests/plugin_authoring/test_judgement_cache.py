"""The judgement cache as a third-party provider uses it: a config that subclasses
``JudgementCacheOptions`` and a factory that returns ``cached(provider, config)``."""

from dataclasses import dataclass

import pytest
from omegaconf import OmegaConf

from alignkit.core import FeedbackProviderEntry, Judgement, check_batch, hookimpl
from alignkit.plugins.feedback.cache import CachedFeedback, JudgementCacheOptions, cached

PROMPT = [{"role": "user", "content": "What is 2 + 2?"}]


@dataclass
class CountingConfig(JudgementCacheOptions):
    margin: float = 0.25


class CountingJudge:
    """Prefers the shorter answer by ``margin``, and counts the pairs it was asked about."""

    asked = 0  # across instances: a fresh run builds a fresh provider

    def __init__(self, config):
        self.margin = float(config.margin)

    def judge(self, prompts, responses_a, responses_b):
        check_batch("counting", prompts, responses_a, responses_b)
        CountingJudge.asked += len(prompts)
        return [Judgement("a", 0.5 + self.margin, "counting") if len(a) <= len(b) else
                Judgement("b", 0.5 - self.margin, "counting") for a, b in zip(responses_a, responses_b)]


class CountingPlugin:
    @hookimpl
    def alignkit_feedback_providers(self):
        yield FeedbackProviderEntry(name="counting", factory=lambda config, ctx: cached(CountingJudge(config), config),
                                    config_schema=CountingConfig, description="Counts what it is asked.")


@pytest.fixture
def extra_plugins():
    return (CountingPlugin(),)


@pytest.fixture(autouse=True)
def fresh_count():
    CountingJudge.asked = 0


def _build(stage_context, **options):
    """``feedback=counting`` with ``options``, built as a stage builds it (no conf/feedback/counting.yaml)."""
    return stage_context().feedback(OmegaConf.create({"name": "counting", **options}))


def _judge(provider):
    return provider.judge([PROMPT, PROMPT], ["4", "2 + 2 = 4"], ["The answer is 4.", "4"])


def test_the_second_call_is_answered_from_the_cache(stage_context, tmp_path):
    options = {"cache": True, "cache_dir": str(tmp_path / "cache")}
    judge = _build(stage_context, **options)
    assert isinstance(judge, CachedFeedback)
    first = _judge(judge)
    second = _judge(judge)
    assert CountingJudge.asked == 2 and (judge.hits, judge.misses) == (2, 2)
    assert [(j.preferred, j.probability) for j in second] == [(j.preferred, j.probability) for j in first] == \
           [("a", 0.75), ("b", 0.25)]  # "4" is shorter than "The answer is 4."; "4" than "2 + 2 = 4"
    rerun = _build(stage_context, **options)  # another run, same settings: the file answers
    _judge(rerun)
    assert CountingJudge.asked == 2 and (tmp_path / "cache" / "judgements.sqlite").is_file()


def test_a_changed_option_is_not_answered_from_the_old_judgements(stage_context, tmp_path):
    _judge(_build(stage_context, cache=True, cache_dir=str(tmp_path)))
    judge = _build(stage_context, cache=True, cache_dir=str(tmp_path), margin=0.4)
    assert [j.probability for j in _judge(judge)] == [0.9, pytest.approx(0.1)]  # 0.5 + 0.4, 0.5 - 0.4
    assert CountingJudge.asked == 4


def test_without_cache_the_provider_is_returned_as_is(stage_context):
    judge = _build(stage_context)
    assert isinstance(judge, CountingJudge)
    _judge(judge)
    _judge(judge)
    assert CountingJudge.asked == 4


def test_a_provider_with_an_identity_is_keyed_by_it(tmp_path):
    class Named(CountingJudge):
        def identity(self):
            return {"provider": "named", "version": 1}

    config = CountingConfig(cache=True, cache_dir=str(tmp_path))
    _judge(cached(Named(config), config))
    _judge(cached(Named(CountingConfig(cache=True, cache_dir=str(tmp_path), margin=0.4)), config))
    assert CountingJudge.asked == 2  # the identity, not the options, decides what is the same judge
