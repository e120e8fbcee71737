"""The keyword judge: alignkit's feedback-provider contract, then its own rules."""

import math

import pytest

from alignkit.core import ConfigError
from alignkit.core.testing import FeedbackProviderContract


class TestKeywordIsAFeedbackProvider(FeedbackProviderContract):
    name = "keyword"


def _judge(stage_context, *overrides):
    return stage_context("feedback=keyword", *overrides).feedback()


def test_rambling_and_refusals_lose_with_the_shipped_rules(stage_context):
    judge = _judge(stage_context)
    prompt = [{"role": "user", "content": "What is 2 + 3?"}]
    ramble, refusal = "Hmm, let me think. It depends.", "I'm sorry, but I can't help with that request."
    verdicts = judge.judge([prompt] * 3, ["2 + 3 = 5.", refusal, "5"], [ramble, "2 + 3 = 5.", "6"])
    assert [v.preferred for v in verdicts] == ["a", "b", "tie"]
    assert verdicts[0].probability > 0.5 > verdicts[1].probability and verdicts[2].probability == 0.5
    assert "let me" in verdicts[0].rationale and "no rule matched" in verdicts[2].rationale


def test_rules_and_length_penalty_come_from_the_config(stage_context):
    judge = _judge(stage_context, "feedback.desirable=[because]", "feedback.undesirable=[]",
                   "feedback.length_penalty=0.5", "feedback.temperature=2.0")
    [verdict] = judge.judge(["q"], ["yes because x"], ["no, no"])  # +1 - 3 * 0.5  vs  -2 * 0.5
    assert verdict.preferred == "a" and verdict.probability == pytest.approx(1 / (1 + math.exp(-0.5 / 2.0)))


def test_a_bad_regular_expression_names_itself(stage_context):
    with pytest.raises(ConfigError, match=r"feedback.undesirable: '\(unclosed'"):
        _judge(stage_context, "feedback.undesirable=['(unclosed']")
