"""Small Protocols that components implement. Nothing here is a base class to inherit.

The first ones are what each kind of component must do; the rest (below ``Wrapper``) are optional
capabilities a component declares by having their members (docs/plugins/hooks.md lists them)."""

from __future__ import annotations

from typing import (TYPE_CHECKING, Any, Callable, Literal, Mapping, Protocol, Sequence, TypeVar,
                    runtime_checkable)

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


# --------------------------------------------------------------------------------------
# Optional capabilities: a component declares one by having its members. The core and the
# built-in stages read them with ``isinstance`` or ``capability()`` below, never ``hasattr``,
# so each is written down once, here, with who reads it and why (docs/plugins/hooks.md).
# --------------------------------------------------------------------------------------

T = TypeVar("T")


@runtime_checkable
class Wrapper(Protocol):
    """A component in front of another that forwards what it does not do itself (the judgement
    cache in front of a feedback provider). ``capability()`` looks through it: on Python >= 3.12
    ``isinstance`` no longer sees members that ``__getattr__`` forwards."""

    wrapped: Any


def capability(component: Any, protocol: type[T]) -> T | None:
    """``component`` as ``protocol`` (a runtime-checkable Protocol of this module) when it or a
    component it wraps (``Wrapper``) implements it, else None. The outermost one wins, so a
    cache's own ``hits`` are read before its provider's."""
    seen: set[int] = set()
    while component is not None and id(component) not in seen:
        if isinstance(component, protocol):
            return component
        seen.add(id(component))
        component = component.wrapped if isinstance(component, Wrapper) else None
    return None


@runtime_checkable
class DataParallelFlag(Protocol):
    """Optional for an ``Optimizer``. The stage runner (core/pipeline.py) runs a stage with
    ``data_parallel = False`` on the main process only under ``accelerate launch`` (labelling,
    evaluation: the others wait and take its result); without the flag every process runs it."""

    data_parallel: bool


def runs_data_parallel(stage: Any) -> bool:
    """Whether every process runs ``stage`` (True unless it declares ``data_parallel = False``)."""
    return bool(stage.data_parallel) if isinstance(stage, DataParallelFlag) else True


@runtime_checkable
class WeightedBatches(Protocol):
    """Optional for the engine's ``TrainTask``. The engine (core/engine.py) weighs micro-batches
    and process shards by ``batch_weight(batch)`` (e.g. scored tokens; it must add up over the
    examples of a batch), so accumulation and data parallelism equal one larger batch; without it,
    by their number of examples."""

    def batch_weight(self, batch: Any) -> float: ...


@runtime_checkable
class HasIdentity(Protocol):
    """Optional for a ``FeedbackProvider`` (and judge backends, teachers): what decides its answers,
    as plain JSON (model weights' fingerprint, prompts, settings; not a file path). The judgement
    cache (plugins/feedback/cache.py) hashes it into every key, so a changed setting is never
    answered from old judgements; without it the cache uses the class and its options."""

    def identity(self) -> dict[str, Any]: ...


@runtime_checkable
class CacheCounters(Protocol):
    """Optional for a ``FeedbackProvider`` or ``PreferenceModel`` with a cache in front: pairs
    answered from it (``hits``) and asked anew (``misses``) so far, or None when there is no cache.
    The label stage logs them as ``label/cache_hits`` and ``label/cache_misses``."""

    hits: int | None
    misses: int | None


@runtime_checkable
class WaitsForPeople(Protocol):
    """Optional for a ``FeedbackProvider`` whose judgements may be ``pending`` (feedback=human).
    When pairs are pending the label stage stops the run as waiting with
    ``waiting_message(labelled, total)`` (progress, where to label, how to resume) and records
    ``url`` (where annotators work) in summary.json; without it, a generic message."""

    url: str

    def waiting_message(self, labelled: int, total: int) -> str: ...


@runtime_checkable
class CalibrationReference(Protocol):
    """Optional for a ``FeedbackProvider``: ``skip_calibration = True`` says its labels are the
    reference a labeler is calibrated against (people), so the label stage does not calibrate it
    (plugins/feedback/calibration.py compares a labeler with human labels)."""

    skip_calibration: bool


def calibrates(provider: Any) -> bool:
    """Whether the label stage calibrates ``provider`` (False when it is the reference itself)."""
    found = capability(provider, CalibrationReference)
    return not (found is not None and found.skip_calibration)


@runtime_checkable
class GivenPreferences(Protocol):
    """Optional for a ``FeedbackProvider`` whose labels are already in the data (feedback=dataset):
    the label stage hands ``existing_preferences(split)`` (preference rows) on instead of sampling
    and judging pairs."""

    def existing_preferences(self, split: str) -> list[dict[str, Any]]: ...


@runtime_checkable
class JudgesNewAnswersFlag(Protocol):
    """Optional for a ``FeedbackProvider``: ``judges_new_answers = False`` says it only looks
    labels up and cannot judge answers it has not seen (feedback=dataset), so the evaluate stage
    leaves the win rate out with a warning instead of failing."""

    judges_new_answers: bool


def judges_new_answers(provider: Any) -> bool:
    """Whether ``provider`` can judge new answers (True unless it declares otherwise)."""
    found = capability(provider, JudgesNewAnswersFlag)
    return True if found is None else bool(found.judges_new_answers)


@runtime_checkable
class Critic(Protocol):
    """What the ``critique_revise`` stage needs of its critic (``critic=constitution``): the
    ``constitution`` whose principles it samples (``.sample(seed, prompt, round)``), a critique of
    each response under its principle, and a revision that answers the critique. A provider without
    them cannot run that stage, and the stage says so."""

    constitution: Any

    def critique(self, prompts: Sequence[Any], responses: Sequence[str], principles: Sequence[Any],
                 seed: int = 0) -> list[str]: ...

    def revise(self, prompts: Sequence[Any], responses: Sequence[str], critiques: Sequence[str],
               principles: Sequence[Any], seed: int = 0) -> list[str]: ...


@runtime_checkable
class WritesManifest(Protocol):
    """Optional for a ``DataSource`` that records where its records came from (data=mixture,
    self_instruct). The curation plugin sets ``manifest_sink`` to a function that writes
    ``<run_dir>/data_manifest.json`` on the main process; the source calls it with its manifest
    whenever that changes (None: nowhere to write)."""

    manifest_sink: Callable[[dict[str, Any]], None] | None


@runtime_checkable
class TaskDeclaration(Protocol):
    """Optional for a ``DataSource``: the task its prompts pose, as user functions named
    ``package.module:function``. ``task_verifier(prompt) -> bool`` keeps the prompts whose answers
    can be checked (None: every prompt); ``task_scorers`` are rewards ``fn(prompt_messages,
    response) -> float`` that measure the task. A stage option set to ``task``
    (``label.prompt_filter=task``, ``evaluate.scorers=[task]``) uses them (core/task.py); the demo
    data declares its arithmetic rule, ``data=files`` its ``task.verifier`` / ``task.scorers``.
    Without them a source declares no task: every prompt, no extra scorer."""

    task_verifier: str | None
    task_scorers: Sequence[str]
