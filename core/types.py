"""Frozen records: what registry hooks return and what components hand each other.

Registry records (``*Entry``) carry a normalised ``name``, a ``factory`` that builds the
component from its validated options and a context (``factory(options, ctx)``), an optional ``config_schema`` (a dataclass whose
fields are the option's hyperparameters and their defaults) and a one-line description.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Mapping, Sequence

if TYPE_CHECKING:
    from pathlib import Path

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


@dataclass(frozen=True)
class ComponentEntry:
    """A named component a registry hook offers.

    Args:
        name: registry name; also the file name of its Hydra group option.
        factory: called as ``factory(options, ctx)``: ``options`` is an instance of
            ``config_schema`` the core validated (the DictConfig when there is none), ``ctx`` the
            StageContext or, for run-wide kinds (data, generation, loggers), the RunContext;
            ``core/hookspecs.py`` says which for each kind, ``core/options.py`` does the call.
        description: one line shown by ``alignkit plugins``.
        config_schema: dataclass type whose fields are the accepted options, or None
            to accept any keys.
    """

    kind: ClassVar[str] = "component"
    name: str
    factory: Callable[..., Any]
    description: str = ""
    config_schema: type | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", registry_name(self.kind, self.name))


def registry_name(kind: str, name: str) -> str:
    """``name`` stripped and lower-cased; a name a Hydra option file could not carry is refused."""
    normalised = name.strip().lower()
    if not _NAME.match(normalised):
        raise ValueError(f"invalid {kind} name {name!r}: use lower-case letters, digits, '_' or '-'")
    return normalised


@dataclass(frozen=True)
class DataSourceEntry(ComponentEntry):
    """Loads SFT examples, preference pairs and prompt pools (see ``interfaces.DataSource``)."""

    kind: ClassVar[str] = "data_source"


@dataclass(frozen=True)
class FeedbackProviderEntry(ComponentEntry):
    """Judges pairs of responses (see ``interfaces.FeedbackProvider``)."""

    kind: ClassVar[str] = "feedback_provider"


@dataclass(frozen=True)
class PreferenceModelEntry(ComponentEntry):
    """Scores responses: a trained reward model, a rule, an implicit DPO reward."""

    kind: ClassVar[str] = "preference_model"


@dataclass(frozen=True)
class OptimizerEntry(ComponentEntry):
    """A policy optimizer stage: sft, dpo, ppo, ... (see ``interfaces.Optimizer``)."""

    kind: ClassVar[str] = "optimizer"


@dataclass(frozen=True)
class StageEntry(ComponentEntry):
    """A pipeline stage that trains nothing: it samples, labels or evaluates (label, evaluate,
    best_of_n, critique_revise). Kept apart from ``OptimizerEntry`` so each registry's name says what
    it holds; it is built and run the same way (``run(ctx) -> StageResult``, see ``interfaces.Optimizer``)
    and a pipeline names it with ``stage: <name>``."""

    kind: ClassVar[str] = "stage"


@dataclass(frozen=True)
class LoggerEntry(ComponentEntry):
    """A metrics sink (see ``interfaces.MetricsLogger``)."""

    kind: ClassVar[str] = "logger"


@dataclass(frozen=True)
class GeneratorEntry(ComponentEntry):
    """A generation backend: samples continuations of prompts (see ``interfaces.Generator``)."""

    kind: ClassVar[str] = "generator"


ENTRY_KINDS: tuple[type[ComponentEntry], ...] = (
    DataSourceEntry,
    FeedbackProviderEntry,
    PreferenceModelEntry,
    OptimizerEntry,
    StageEntry,
    LoggerEntry,
    GeneratorEntry,
)

@dataclass(frozen=True)
class AdvantageEstimatorEntry:
    """An advantage estimator of on-policy RL (``optimizer.advantage=<name>``; see ``core/rl.py``).

    Not a ``ComponentEntry``: it is a pure function the RL loop calls every step, not a component
    built once from a config node, so it has no factory and no schema (its options are the
    optimizer's).

    Args:
        name: registry name.
        estimate: ``estimate(AdvantageInputs) -> AdvantageOutputs``.
        needs_critic: the loop trains a value model and passes its values (GAE).
        description: one line shown by ``alignkit plugins``.
    """

    kind: ClassVar[str] = "advantage_estimator"
    name: str
    estimate: Callable[..., Any]
    needs_critic: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", registry_name(self.kind, self.name))


@dataclass(frozen=True)
class PolicyLossEntry:
    """A policy loss of on-policy RL (``optimizer.policy_loss=<name>``; see ``core/rl.py``).

    Args:
        name: registry name.
        loss: ``loss(PolicyLossInputs) -> PolicyLossOutputs``.
        pairwise: the loss compares pairs of responses (rows 2j, 2j+1: chosen, rejected), so the
            loop feeds it pairs and divides by their number (online DPO).
        description: one line shown by ``alignkit plugins``.
    """

    kind: ClassVar[str] = "policy_loss"
    name: str
    loss: Callable[..., Any]
    pairwise: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", registry_name(self.kind, self.name))


RL_PART_KINDS: tuple[type, ...] = (AdvantageEstimatorEntry, PolicyLossEntry)
"""Registry records that are pure functions of the RL loop rather than built components."""


@dataclass(frozen=True)
class CommandEntry:
    """A subcommand of ``alignkit`` (``alignkit <name> ...``), offered by ``alignkit_commands``.

    Not a ``ComponentEntry``: a command is run from the command line, not built from a config node.

    Args:
        name: the word after ``alignkit``; a name two plugins offer is an error naming both.
        run: ``run(argv) -> int | None`` with the arguments after the name; returns the exit status
            (None: 0). It should import what it needs inside, so ``alignkit --help`` stays fast.
        help: one line shown by ``alignkit --help`` and ``alignkit plugins``.
        usage: its arguments as ``alignkit --help`` shows them after the name (``RUN_DIR``).
    """

    kind: ClassVar[str] = "command"
    name: str
    run: Callable[[list[str]], Any]
    help: str = ""
    usage: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", registry_name(self.kind, self.name))

    @property
    def description(self) -> str:
        """``help``, under the name every other registry record uses (``alignkit plugins``)."""
        return self.help


RegistryEntry = ComponentEntry | AdvantageEstimatorEntry | PolicyLossEntry | CommandEntry

ModelRole = Literal["policy", "reference", "reward", "judge"]


@dataclass(frozen=True)
class ModelSpec:
    """What the user asked for with ``model=...``.

    Args:
        name_or_path: alias (``tiny-random``), hub id, local directory or ``.gguf`` file.
        revision: hub revision, if any.
        trust_remote_code: off unless the config says so.
        dtype: ``float32``, ``bfloat16``, ``float16`` or ``auto``.
        options: extra keys of the model config (e.g. a tiny model's sizes).
    """

    name_or_path: str
    revision: str | None = None
    trust_remote_code: bool = False
    dtype: str = "float32"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class LoadedModel:
    """A model and its tokenizer, as returned by ``alignkit_load_model``."""

    model: Any
    tokenizer: Any
    source: str = ""


@dataclass
class StageResult:
    """What a stage hands to the run directory and to later stages.

    ``artifacts`` maps names to paths relative to the run directory
    (``{"model": "01-sft/model"}``); a later stage trains from the last ``model``.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)


Preference = Literal["a", "b", "tie", "pending"]


@dataclass(frozen=True)
class Judgement:
    """One verdict on (prompt, response A, response B).

    Args:
        preferred: ``a``, ``b``, ``tie`` or ``pending`` (a human will answer later).
        probability: P(A is better), in [0, 1].
        provider: registry name of the feedback provider.
        principle: the principle used, where there was one.
        rationale: the judge's reasoning, where there was one.
        annotator: who (or which model) gave the label.
    """

    preferred: Preference
    probability: float
    provider: str
    principle: str | None = None
    rationale: str | None = None
    annotator: str | None = None


def check_batch(provider: str, prompts: Sequence[object], responses_a: Sequence[object],
                responses_b: Sequence[object]) -> None:
    """A batch is pairs: prompts, A and B must line up. ``zip`` would quietly judge the shortest
    length and drop the rest, so a caller's off-by-one would lose labels without a word."""
    lengths = (len(prompts), len(responses_a), len(responses_b))
    if len(set(lengths)) != 1:
        raise ValueError(f"feedback '{provider}': {lengths[0]} prompts, {lengths[1]} responses A and "
                         f"{lengths[2]} responses B; judge() takes one of each per pair")


def stage_dir_name(index: int, stage: str) -> str:
    """``01-sft``: the folder of the index-th (1-based) stage in the run directory."""
    return f"{index:02d}-{stage}"


def relative_to_run(run_dir: Path, path: Path) -> str:
    return str(path.relative_to(run_dir))
