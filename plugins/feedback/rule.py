"""``feedback=rule``: a Python function scores each response; the higher score is preferred.

Verifiable tasks (arithmetic, unit tests, format checks) need no judge: the rule is the
ground truth. Scores within ``tolerance`` of each other are a tie.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from alignkit.core import check_batch
from alignkit.core.callables import call_scorer, load_callable
from alignkit.plugins.feedback.cache import JudgementCacheOptions
from alignkit.plugins.feedback.judgement import PairJudgement


@dataclass
class RuleFeedbackConfig(JudgementCacheOptions):
    """Options of ``feedback=rule`` (``cache`` off: rules are cheap; cache when yours is not)."""

    fn: str = "alignkit.plugins.rules.demo:arithmetic_graded"
    tolerance: float = 0.0  # |score_a - score_b| <= tolerance is a tie
    temperature: float = 0.0  # > 0: soft label sigmoid((score_a - score_b) / temperature); 0: 1 or 0


class RuleFeedback:
    def __init__(self, options: RuleFeedbackConfig) -> None:
        self.options = options
        self.fn = load_callable(options.fn, what="feedback.fn")
        self.calls = 0

    def identity(self) -> dict[str, Any]:
        return {"provider": "rule", "fn": self.options.fn, "tolerance": self.options.tolerance,
                "temperature": self.options.temperature}

    def score(self, prompts: Sequence[Any], responses: Sequence[str]) -> list[float]:
        self.calls += len(responses)
        return [call_scorer(self.fn, self.options.fn, p, r) for p, r in zip(prompts, responses)]

    def judge(self, prompts: Sequence[Any], responses_a: Sequence[str], responses_b: Sequence[str]) -> list[PairJudgement]:
        check_batch("rule", prompts, responses_a, responses_b)
        score_a = self.score(prompts, responses_a)
        score_b = self.score(prompts, responses_b)
        out = []
        for sa, sb in zip(score_a, score_b):
            diff = sa - sb
            if abs(diff) <= self.options.tolerance:
                preferred, p = "tie", 0.5
            else:
                preferred = "a" if diff > 0 else "b"
                if self.options.temperature > 0:
                    p = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, diff / self.options.temperature))))
                else:
                    p = 1.0 if diff > 0 else 0.0
            out.append(PairJudgement(preferred=preferred, probability=p, provider="rule", principle=None,
                                     rationale=f"score A={sa:g}, B={sb:g}", annotator=self.options.fn))
        return out
