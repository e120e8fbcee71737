"""Small Protocols that components implement. Nothing here is a base class to inherit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Mapping, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    import datasets
    import torch

    from alignkit.core.pipeline import StageContext
    from alignkit.core.types import Judgement, StageResult

Split = Literal["train", "eval"]


@runtime_checkable
class DataSource(Protocol):
    """Hands out validated Hugging Face datasets with TRL-compatible columns.

    SFT rows have ``messages`` (a list of ``{"role", "content"}``; loss on assistant turns).
    Preference rows have ``prompt`` (messages up to the answer), ``chosen`` and ``rejected``
    (assistant text) and optionally ``strength`` = P(chosen preferred).
    Prompt rows have ``prompt`` (messages). A method returns None when the source has no
    such data.
    """

    def sft(self, split: Split) -> datasets.Dataset | None: ...

    def preferences(self, split: Split) -> datasets.Dataset | None: ...

    def prompts(self, split: Split) -> datasets.Dataset | None: ...


@runtime_checkable
class Optimizer(Protocol):
    """A policy optimizer: trains the current policy in one stage of a pipeline."""

    def run(self, ctx: StageContext) -> StageResult: ...


@runtime_checkable
class FeedbackProvider(Protocol):
    """Judges pairs of responses: one ``Judgement`` per (prompt, a, b), in order."""

    def judge(self, prompts: Sequence[Any], responses_a: Sequence[str],
              responses_b: Sequence[str]) -> list[Judgement]: ...


@runtime_checkable
class PreferenceModel(Protocol):
    """Scores responses; a higher score is a more preferred response."""

    def score(self, prompts: Sequence[Any], responses: Sequence[str]) -> torch.Tensor: ...


@runtime_checkable
class ExplainedScores(Protocol):
    """Optional for a ``PreferenceModel`` made of parts (``preference_model=composite``): what went
    into its last ``score`` call. Stages that score log ``last_metrics()`` with their reward metrics
    (``reward/<key>``); evaluate reports each of ``last_scores()`` as a scorer of its own."""

    def last_metrics(self) -> Mapping[str, float]: ...

    def last_scores(self) -> Mapping[str, Sequence[float]]: ...


def score_metrics(scorer: Any, prefix: str = "reward/") -> dict[str, float]:
    """``scorer.last_metrics()`` under ``prefix``, or {} for a scorer that is not ``ExplainedScores``
    (or a process that holds no copy of it, ``reward_placement=rank0``)."""
    if not isinstance(scorer, ExplainedScores):
        return {}
    return {f"{prefix}{key}": float(value) for key, value in scorer.last_metrics().items()}


def score_parts(scorer: Any) -> Mapping[str, Sequence[float]]:
    """``scorer.last_scores()`` (each part's score of every response of the last call), or {} for a
    scorer that is not ``ExplainedScores``."""
    return scorer.last_scores() if isinstance(scorer, ExplainedScores) else {}


@runtime_checkable
class Generator(Protocol):
    """Samples one continuation per tokenised prompt from ``model``'s current weights.

    Returns the raw new token ids of each prompt, in order; callers cut them at the stop ids.
    ``seed`` makes a call reproducible (None: continue the current random stream).
    """

    name: str

    def generate(self, model: Any, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int,
                 temperature: float, top_p: float, stop_ids: Sequence[int], pad_id: int,
                 min_new_tokens: int = 0, seed: int | None = None) -> list[list[int]]: ...


@runtime_checkable
class MetricsLogger(Protocol):
    """A metrics sink. ``log`` receives one record per logged step; ``close`` the summary."""

    def log(self, stage: str, step: int, metrics: Mapping[str, float]) -> None: ...

    def close(self, summary: Mapping[str, Any]) -> None: ...
