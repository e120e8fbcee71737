"""Curation filters: trade diversity against quality on purpose, by config.

* ``dedup``: deduplicate for diversity. Records are visited best first (by quality score when
  a scorer is configured, else in data order) and one is kept unless its instruction is an
  exact duplicate of, or within ROUGE-L ``dedup_threshold`` of, an instruction already kept.
  So each near-duplicate group keeps its best member.
* ``top_k``: keep the ``top_k`` best records by quality score (after dedup when both are set).

Kept records stay in their original order. ``alignkit data inspect --dedup / --top-k`` shows
the report before and after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from alignkit.core.errors import ConfigError
from alignkit.plugins.curation.lexical import normalise
from alignkit.plugins.curation.quality import QualityConfig, build_scorer
from alignkit.plugins.curation.records import Example
from alignkit.plugins.curation.rouge import RougeIndex


@dataclass
class CurateConfig:
    """Options of the curation filters (``curate.*``); all off by default."""

    dedup: bool = False
    dedup_threshold: float = 0.7  # ROUGE-L between instructions above which a record is a near-duplicate
    top_k: Optional[int] = None  # keep the k best by quality score (needs quality.*)
    quality: QualityConfig = field(default_factory=QualityConfig)

    @property
    def active(self) -> bool:
        return bool(self.dedup or self.top_k is not None)


@dataclass
class Curated:
    kept: list[int]  # indices into the input, in input order
    scores: list[float] | None  # quality score of every input record, when a scorer ran
    scorer: str | None
    removed: dict[str, int]  # why records went: near_duplicate, exact_duplicate, below_top_k


def dedup_order(examples: Sequence[Example], order: Sequence[int],
                threshold: float) -> tuple[list[int], dict[str, int]]:
    """Visit ``order``; keep a record unless it duplicates a kept one (exactly or by ROUGE-L)."""
    index = RougeIndex(threshold)
    seen: set[str] = set()
    kept, removed = [], {"exact_duplicate": 0, "near_duplicate": 0}
    for i in order:
        key = normalise(examples[i].instruction)
        if key in seen:
            removed["exact_duplicate"] += 1
            continue
        if index.match(examples[i].instruction) is not None:
            removed["near_duplicate"] += 1
            continue
        seen.add(key)
        index.add(examples[i].instruction)
        kept.append(i)
    return kept, removed


def curate(examples: Sequence[Example], cfg: CurateConfig, registry: Any = None, scorer: Any = None,
           scores: Sequence[float] | None = None) -> Curated:
    """Apply ``cfg`` to ``examples``. ``scorer`` / ``scores`` may be given to reuse a loaded
    scorer or scores already computed; else the scorer of ``cfg.quality`` is built."""
    if cfg.top_k is not None and cfg.top_k < 0:
        raise ConfigError(f"curate.top_k must be >= 0, not {cfg.top_k}")
    if scores is None:
        scorer = scorer or build_scorer(cfg.quality, registry)
        scores = scorer.score(list(examples)) if scorer is not None and examples else None
    if cfg.top_k is not None and scores is None:
        raise ConfigError("curate.top_k needs quality scores: set curate.quality.preference_model or "
                          "curate.quality.judge (alignkit data inspect: --reward-model, --rule or --judge)")
    order = list(range(len(examples)))
    if scores is not None:
        order.sort(key=lambda i: (-scores[i], i))
    removed: dict[str, int] = {}
    if cfg.dedup:
        order, removed = dedup_order(examples, order, cfg.dedup_threshold)
    if cfg.top_k is not None and len(order) > cfg.top_k:
        removed["below_top_k"] = len(order) - cfg.top_k
        order = order[:cfg.top_k]
    return Curated(kept=sorted(order), scores=list(scores) if scores is not None else None,
                   scorer=getattr(scorer, "name", None), removed=removed)
