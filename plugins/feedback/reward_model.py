"""``feedback=reward_model``: a trained preference model scores both responses.

P(A better) = sigmoid(r_A - r_B), the Bradley-Terry reading of two rewards. The scorer is
whatever ``preference_model=<name>`` builds (``ctx.preference_model()``), so a rule or an
ensemble works as well as a trained reward model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from alignkit.core import check_batch
from alignkit.plugins.feedback.cache import JudgementCacheOptions
from alignkit.plugins.feedback.judgement import PairJudgement, verdict


@dataclass
class RewardModelFeedbackConfig(JudgementCacheOptions):
    """Options of ``feedback=reward_model``."""

    tie_margin: float = 0.0  # |P(A better) - 0.5| <= tie_margin is a tie
    batch_size: int = 16


class RewardModelFeedback:
    def __init__(self, options: RewardModelFeedbackConfig, scorer: Any, name: str = "") -> None:
        self.options = options
        self.scorer = scorer
        self.name = name
        self.calls = 0

    def identity(self) -> dict[str, Any]:
        return {"provider": "reward_model", "scorer": self.name, "tie_margin": self.options.tie_margin}

    def _scores(self, prompts: Sequence[Any], responses: Sequence[str]) -> list[float]:
        out: list[float] = []
        size = max(1, self.options.batch_size)
        for start in range(0, len(responses), size):
            scores = self.scorer.score(list(prompts[start:start + size]), list(responses[start:start + size]))
            out.extend(float(s) for s in (scores.tolist() if hasattr(scores, "tolist") else scores))
        self.calls += len(responses)
        return out

    def score(self, prompts: Sequence[Any], responses: Sequence[str]) -> list[float]:
        """The preference model's score of each response (label.pair_selection=best_worst|divpo)."""
        return self._scores(prompts, responses)

    def judge(self, prompts: Sequence[Any], responses_a: Sequence[str], responses_b: Sequence[str]) -> list[PairJudgement]:
        check_batch("reward_model", prompts, responses_a, responses_b)
        ra = self._scores(prompts, responses_a)
        rb = self._scores(prompts, responses_b)
        out = []
        for a, b in zip(ra, rb):
            p = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, a - b))))
            out.append(PairJudgement(preferred=verdict(p, self.options.tie_margin), probability=p,
                                     provider="reward_model", rationale=f"reward A={a:.4g}, B={b:.4g}",
                                     annotator=self.name or None))
        return out
