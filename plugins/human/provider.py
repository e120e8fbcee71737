"""``feedback=human``: people judge the pairs, through the label store and its web app.

``judge`` pushes every pair to the store (idempotent: keyed by content, so a rerun
pushes nothing twice), then answers each pair that has its labels from their aggregate
(majority or Dawid–Skene; probability = aggregated P(A better)). Pairs still missing
labels come back ``pending``: the ``label`` stage pushes all its pairs, then ends the run
with status ``waiting`` (``WaitingForFeedback``), saying how many pairs are labelled and
where to label the rest. With ``wait: true`` the provider raises that itself, for stages
that cannot handle ``pending``. Rerunning the same command resumes: the pairs are found
again by content and the labels given meanwhile are read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from alignkit.core import ConfigError, Judgement, check_batch
from alignkit.core.errors import WaitingForFeedback
from alignkit.plugins.human.agreement import AGGREGATORS, aggregate, flip_rate
from alignkit.plugins.human.store import Store

log = logging.getLogger("alignkit")


@dataclass
class HumanFeedbackConfig:
    """Options of ``feedback=human``."""

    db: str = "sqlite:///labels.db"  # SQLAlchemy URL: sqlite:///path.db or postgresql://user@host/db
    project: str = "default"  # pairs of one run go to this project of the store
    overlap: int = 1  # annotators per pair (2+ lets agreement and label noise be measured)
    min_labels: Optional[int] = None  # votes a pair needs before it counts as judged (default: overlap)
    aggregate: str = "majority"  # majority | dawid_skene
    url: str = "http://127.0.0.1:8000"  # where annotators work: shown in the waiting message
    wait: bool = False  # true: judge() itself raises WaitingForFeedback (for stages that cannot handle pending)
    principles: list = field(default_factory=list)  # tags annotators may attach to a label


class HumanFeedback:
    """Judgements from the label store; ``pending`` where people have not answered yet."""

    name = "human"
    skip_calibration = True  # people are the reference a labeler is calibrated against

    def __init__(self, options: HumanFeedbackConfig, store: Store, origin_run: str | None = None,
                 origin_stage: str | None = None) -> None:
        if options.aggregate not in AGGREGATORS:
            raise ConfigError(f"feedback.aggregate must be one of {', '.join(AGGREGATORS)}, "
                              f"not '{options.aggregate}'")
        if options.overlap < 1:
            raise ConfigError(f"feedback.overlap must be at least 1, not {options.overlap}")
        self.options = options
        self.store = store
        self.origin_run, self.origin_stage = origin_run, origin_stage
        self._told = False
        self.min_labels = options.min_labels if options.min_labels is not None else options.overlap
        if self.min_labels < 1:
            raise ConfigError(f"feedback.min_labels must be at least 1, not {self.min_labels}")
        self.store.ensure_project(options.project, options.overlap, list(options.principles) or None)

    def identity(self) -> dict[str, Any]:
        return {"provider": "human", "db": self.store.display_url, "project": self.options.project}

    def judge(self, prompts: Sequence[Any], responses_a: Sequence[str],
              responses_b: Sequence[str]) -> list[Judgement]:
        check_batch("human", prompts, responses_a, responses_b)
        pairs = [{"prompt": _plain(p), "response_a": a, "response_b": b}
                 for p, a, b in zip(prompts, responses_a, responses_b)]
        ids = self.store.add_items(self.options.project, pairs, overlap=self.options.overlap,
                                   origin_run=self.origin_run, origin_stage=self.origin_stage)
        labels = self.store.labels(self.options.project, sorted(set(ids)))
        verdicts = aggregate(labels, self.options.aggregate)
        answered: dict[int, list[Any]] = {}
        for label in labels:
            answered.setdefault(label.item_id, []).append(label)
        out: list[Judgement] = []
        for item_id in ids:
            votes = [lab for lab in answered.get(item_id, []) if lab.choice != "skip"]
            skips = [lab for lab in answered.get(item_id, []) if lab.choice == "skip"]
            if len(votes) >= self.min_labels and item_id in verdicts:
                agg = verdicts[item_id]
                who = ",".join(sorted({lab.annotator for lab in votes}))
                out.append(Judgement(preferred=agg.preferred, probability=agg.probability, provider="human",
                                     rationale=f"{agg.votes} vote(s), agreement {agg.agreement:.2f}",
                                     principle=_principles(votes), annotator=who))
            elif not votes and len(skips) >= self.options.overlap:
                # everyone asked could not judge it: an uninformative tie, not an endless wait
                out.append(Judgement(preferred="tie", probability=0.5, provider="human",
                                     rationale="skipped by every annotator"))
            else:
                out.append(Judgement(preferred="pending", probability=0.5, provider="human"))
        pending_ids = {i for i, j in zip(ids, out) if j.preferred == "pending"}
        if pending_ids:
            total = len(set(ids))
            message = self.waiting_message(total - len(pending_ids), total)
            if self.options.wait:
                raise WaitingForFeedback(message, labelled=total - len(pending_ids), total=total,
                                         url=self.options.url)
            if not self._told:  # once per run: the label stage judges in chunks
                log.info("feedback 'human': waiting for people: %s", message)
                self._told = True
        return out

    @property
    def url(self) -> str:
        return self.options.url

    def waiting_message(self, labelled: int, total: int) -> str:
        """What a waiting run tells the user: progress, where to label, how to resume."""
        return (f"{labelled} of {total} pairs are labelled in project '{self.options.project}' of "
                f"{self.store.display_url} ({self.min_labels} label(s) each). Annotators label the rest at "
                f"{self.options.url} (start the app with: alignkit label serve --db {self.store.display_url}); "
                f"rerun the same command in the same run directory to resume from here.")

    def label_noise(self) -> float | None:
        """The flip rate implied by annotator disagreement in this project (None without overlap)."""
        return flip_rate(self.store.labels(self.options.project))


def _plain(prompt: Any) -> Any:
    """Prompts as plain JSON (a HF dataset hands out lists of dicts; keep only role/content)."""
    if isinstance(prompt, str):
        return prompt
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]


def _principles(votes: Sequence[Any]) -> str | None:
    tags = sorted({t for lab in votes for t in lab.principles})
    return ", ".join(tags) if tags else None


def factory(options: HumanFeedbackConfig, ctx: Any) -> HumanFeedback:
    """``factory(options, ctx)``: ``ctx`` (a StageContext) names the run and stage the pairs came from."""
    try:
        store = Store(options.db)
    except Exception as exc:  # a bad URL or an unreachable server: say which
        raise ConfigError(f"feedback.db={options.db!r}: cannot open the label store: {exc}") from exc
    run = getattr(getattr(ctx, "run", None), "run_dir", None)
    return HumanFeedback(options, store, origin_run=str(run.path) if run is not None else None,
                         origin_stage=getattr(ctx, "name", None))
