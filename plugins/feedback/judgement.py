"""Judgements with the two positional verdicts kept, and how both orders are combined.

An AI judge sees each pair twice, once per order, because small judges prefer a slot
rather than an answer. ``orders`` keeps P(A better) from each order so position
consistency can be measured after the fact (and from the cache).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from alignkit.core import AlignkitError, Judgement

PREFERENCES = ("a", "b", "tie", "pending")


class FeedbackError(AlignkitError):
    """A judge failed (server down, timeout, unreadable answer); cached judgements are kept."""


@dataclass(frozen=True)
class PairJudgement(Judgement):
    """A ``Judgement`` plus P(A better) as judged with A shown first and with A shown second."""

    orders: Optional[tuple[float, float]] = None

    @property
    def position_consistent(self) -> Optional[bool]:
        """Both orders picked the same response (None when the judge has no positions)."""
        if self.orders is None:
            return None
        first, second = self.orders
        return (first > 0.5) == (second > 0.5) and first != 0.5 and second != 0.5


def verdict(probability: float, tie_margin: float) -> str:
    """``a``, ``b`` or ``tie`` from P(A better): a tie within ``tie_margin`` of 0.5."""
    if abs(probability - 0.5) <= tie_margin:
        return "tie"
    return "a" if probability > 0.5 else "b"


def combine_orders(p_a_first: float, p_first_when_swapped: float, *, provider: str, tie_margin: float,
                   principle: str | None = None, rationale: str | None = None,
                   annotator: str | None = None) -> PairJudgement:
    """Average P(A better) over both presentation orders.

    ``p_a_first`` is P(first shown is better) with A first; ``p_first_when_swapped`` is the
    same with B first, so P(A better) there is its complement. A judge that always picks
    the first slot ends at exactly 0.5: a tie, not a fake preference.
    """
    second = 1.0 - p_first_when_swapped
    p = (p_a_first + second) / 2.0
    return PairJudgement(preferred=verdict(p, tie_margin), probability=p, provider=provider, principle=principle,
                         rationale=rationale, annotator=annotator, orders=(p_a_first, second))


def to_dict(j: Judgement) -> dict[str, Any]:
    out = {f.name: getattr(j, f.name) for f in dataclasses.fields(Judgement)}
    orders = getattr(j, "orders", None)
    out["orders"] = list(orders) if orders is not None else None
    return out


def from_dict(data: Mapping[str, Any]) -> PairJudgement:
    orders = data.get("orders")
    return PairJudgement(preferred=data["preferred"], probability=float(data["probability"]),
                         provider=data["provider"], principle=data.get("principle"),
                         rationale=data.get("rationale"), annotator=data.get("annotator"),
                         orders=tuple(orders) if orders is not None else None)


def swapped(j: Judgement) -> PairJudgement:
    """The same verdict for the pair presented as (B, A)."""
    flip = {"a": "b", "b": "a"}.get(j.preferred, j.preferred)
    orders = getattr(j, "orders", None)
    return PairJudgement(preferred=flip, probability=1.0 - j.probability, provider=j.provider,
                         principle=j.principle, rationale=j.rationale, annotator=j.annotator,
                         orders=(1.0 - orders[1], 1.0 - orders[0]) if orders is not None else None)
