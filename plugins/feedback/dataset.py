"""``feedback=dataset``: the labels are already in the data (HH-RLHF's chosen/rejected).

The label stage passes every pair of the data source through unchanged (``label.prompts``
caps them only when set); ``judge`` answers for pairs the data contains, so the same
calibration and pipelines work with given labels. It cannot judge new answers: the evaluate
stage reports no win rate with it and says what scores the answers instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from alignkit.core import check_batch
from alignkit.plugins.feedback.judgement import FeedbackError, PairJudgement


@dataclass
class DatasetFeedbackConfig:
    """Options of ``feedback=dataset``."""

    unknown: str = "error"  # a pair the data does not hold: error | tie
    cache: bool = False
    cache_dir: Optional[str] = None


def _key(prompt: Any, a: str, b: str) -> str:
    return json.dumps([prompt, a, b], sort_keys=True, ensure_ascii=False)


class DatasetFeedback:
    """Looks verdicts up in the data: it cannot judge answers the data does not hold, so the
    evaluate stage leaves the win rate out (``judges_new_answers``) instead of failing."""

    judges_new_answers = False

    def __init__(self, options: DatasetFeedbackConfig, ctx: Any) -> None:
        if options.unknown not in ("error", "tie"):
            from alignkit.core import ConfigError

            raise ConfigError(f"feedback.unknown must be 'error' or 'tie', not '{options.unknown}'")
        self.options = options
        self.ctx = ctx
        self._index: dict[str, float] | None = None

    def identity(self) -> dict[str, Any]:
        return {"provider": "dataset"}

    def existing_preferences(self, split: str) -> list[dict[str, Any]]:
        """The labelled pairs of ``split`` as canonical preference records."""
        rows = self.ctx.dataset("preferences", split)
        if rows is None:
            return []
        out = []
        for row in rows:
            out.append({"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"],
                        "strength": 1.0 if row.get("strength") is None else float(row["strength"]),
                        "source": row.get("source") or "dataset"})
        return out

    def _lookup(self) -> dict[str, float]:
        if self._index is None:
            self._index = {}
            for split in ("train", "eval"):
                for row in self.existing_preferences(split):
                    self._index[_key(row["prompt"], row["chosen"], row["rejected"])] = row["strength"]
        return self._index

    def judge(self, prompts: Sequence[Any], responses_a: Sequence[str], responses_b: Sequence[str]) -> list[PairJudgement]:
        check_batch("dataset", prompts, responses_a, responses_b)
        index = self._lookup()
        out = []
        for p, a, b in zip(prompts, responses_a, responses_b):
            if _key(p, a, b) in index:
                prob = index[_key(p, a, b)]
            elif _key(p, b, a) in index:
                prob = 1.0 - index[_key(p, b, a)]
            elif self.options.unknown == "tie":
                prob = 0.5
            else:
                raise FeedbackError("feedback=dataset: the data holds no label for the pair with prompt "
                                    f"{json.dumps(p, ensure_ascii=False)[:200]}; set feedback.unknown=tie to "
                                    "treat unknown pairs as ties")
            preferred = "tie" if prob == 0.5 else ("a" if prob > 0.5 else "b")
            out.append(PairJudgement(preferred=preferred, probability=prob, provider="dataset", annotator="dataset"))
        return out
