"""The ``keyword`` feedback provider: a transparent rule judge.

Each response scores +1 per match of a ``desirable`` regular expression, -1 per match of an
``undesirable`` one, minus ``length_penalty`` per word. The higher score wins; P(A is better)
is sigmoid((score_a - score_b) / temperature), so equal scores are a tie at exactly 0.5 and
swapping A and B mirrors the verdict.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, List, Sequence

from alignkit.core import ConfigError, Judgement

NAME = "keyword"


@dataclass
class KeywordConfig:
    """Options of ``feedback=keyword``."""

    desirable: List[str] = field(default_factory=list)  # regular expressions, +1 per match
    undesirable: List[str] = field(default_factory=list)  # regular expressions, -1 per match
    case_sensitive: bool = False
    length_penalty: float = 0.0  # subtracted per word
    temperature: float = 1.0  # softness of P(A better) in score units


class KeywordJudge:
    """Judges pairs by the rules in its config; deterministic and instant."""

    def __init__(self, config: Any, ctx: Any = None) -> None:
        """``config``: the validated ``KeywordConfig``; ``ctx``: the asking stage's context (unused)."""
        self.length_penalty = float(config.length_penalty)
        self.temperature = float(config.temperature)
        if self.temperature <= 0:
            raise ConfigError(f"feedback.temperature must be > 0, not {self.temperature}")
        flags = 0 if config.case_sensitive else re.IGNORECASE
        self.rules: list[tuple[str, re.Pattern, int]] = []
        for key, sign in (("desirable", 1), ("undesirable", -1)):
            for pattern in getattr(config, key):
                try:
                    self.rules.append((str(pattern), re.compile(str(pattern), flags), sign))
                except re.error as exc:
                    raise ConfigError(f"feedback.{key}: {pattern!r} is not a regular expression: {exc}") from exc

    def score(self, text: str) -> tuple[float, list[str]]:
        total, hits = 0.0, []
        for pattern, regex, sign in self.rules:
            n = len(regex.findall(text))
            if n:
                total += sign * n
                hits.append(f"{'+' if sign > 0 else '-'}{n} {pattern!r}")
        words = len(text.split())
        if self.length_penalty and words:
            total -= self.length_penalty * words
            hits.append(f"-{self.length_penalty * words:g} for {words} words")
        return total, hits

    def judge(self, prompts: Sequence[Any], responses_a: Sequence[str],
              responses_b: Sequence[str]) -> list[Judgement]:
        if not len(prompts) == len(responses_a) == len(responses_b):
            raise ValueError(f"keyword: {len(prompts)} prompts, {len(responses_a)} responses A and "
                             f"{len(responses_b)} responses B; they must be as many")
        out = []
        for a, b in zip(responses_a, responses_b):
            (sa, hits_a), (sb, hits_b) = self.score(a), self.score(b)
            diff = sa - sb
            probability = 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, diff / self.temperature))))
            preferred = "a" if diff > 0 else "b" if diff < 0 else "tie"
            if preferred == "tie":
                probability = 0.5
            rationale = f"A scores {sa:g} ({', '.join(hits_a) or 'no rule matched'}); " \
                        f"B scores {sb:g} ({', '.join(hits_b) or 'no rule matched'})"
            out.append(Judgement(preferred=preferred, probability=probability, provider=NAME,
                                 rationale=rationale, annotator="keyword-rules"))
        return out
