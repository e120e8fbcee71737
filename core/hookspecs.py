"""The alignkit plugin contract: every hook, typed and documented.

A plugin is a module or object whose functions are marked with ``@alignkit.core.hookimpl``
and named after a spec below. Built-ins and third-party packages register the same way,
through the ``alignkit`` entry-point group.

Three kinds of hook:

* **Registries** (called for every plugin, results flattened): return an iterable of
  frozen ``*Entry`` records. A name offered twice is an error naming both providers.
* **Resolver** (``firstresult``): the first plugin that recognises the request answers.
  Stops at first non-None result.
* **Lifecycle** (called for every plugin, return None): observe or adjust a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

import pluggy

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from alignkit.core.pipeline import RunContext
    from alignkit.core.types import (
        DataSourceEntry,
        FeedbackProviderEntry,
        GeneratorEntry,
        LoadedModel,
        LoggerEntry,
        ModelRole,
        ModelSpec,
        OptimizerEntry,
        PreferenceModelEntry,
        StageResult,
    )

PROJECT = "alignkit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

ALIGNKIT_HOOKS_VERSION = "1.0"
"""The version of this contract: the minor part goes up when a hook is added, the major part
when a hook is removed or changes meaning. A plugin module may declare the versions it was
written for, ``alignkit_requires = ">=1.0,<2"``; a plugin outside its range is not loaded and
the message says which side to upgrade."""


# --------------------------------------------------------------------------------------
# Registries: each returns an iterable of records
# --------------------------------------------------------------------------------------


@hookspec
def alignkit_data_sources() -> Iterable[DataSourceEntry]:
    """Offer data sources: loaders of SFT examples, preference pairs and prompt pools.

    Called once when the registry is first read. ``data=<name>`` picks one; its factory is
    called with the validated ``data`` config and must return an object implementing
    ``alignkit.core.interfaces.DataSource``.

    :returns: an iterable of ``DataSourceEntry``.

    Example::

        @hookimpl
        def alignkit_data_sources():
            yield DataSourceEntry(name="mycsv", factory=MyCsvSource, description="...")
    """
    yield from ()


@hookspec
def alignkit_feedback_providers() -> Iterable[FeedbackProviderEntry]:
    """Offer feedback providers: sources of preference judgements and critiques.

    Called once when the registry is first read. Human annotators, a constitution-guided
    AI judge, rules and reward models all sit behind this one interface, so ``feedback=<name>`` swaps them.
    A stage that needs judgements calls ``ctx.feedback()``, which validates the ``feedback``
    config node against the entry's ``config_schema`` and calls ``factory(cfg, ctx)`` (``ctx``
    is the ``StageContext``: models, earlier artifacts, the run directory). It returns an
    object implementing ``alignkit.core.interfaces.FeedbackProvider``.

    :returns: an iterable of ``FeedbackProviderEntry``.
    """
    yield from ()


@hookspec
def alignkit_preference_models() -> Iterable[PreferenceModelEntry]:
    """Offer preference models: scorers of responses (reward models, rules, implicit rewards).

    Called once when the registry is first read; ``preference_model=<name>`` picks one. A stage
    that scores responses (PPO, evaluation, best-of-n) calls ``ctx.preference_model()``, which
    validates the ``preference_model`` node and calls ``factory(cfg, ctx)``; it returns an object
    implementing ``alignkit.core.interfaces.PreferenceModel``.

    :returns: an iterable of ``PreferenceModelEntry``.
    """
    yield from ()


@hookspec
def alignkit_optimizers() -> Iterable[OptimizerEntry]:
    """Offer policy optimizers: the training algorithms of pipeline stages (sft, dpo, ...).

    Called once when the registry is first read. A pipeline stage names an optimizer; the
    runner validates the stage's config against
    the entry's ``config_schema`` and calls the factory, which returns an object
    implementing ``alignkit.core.interfaces.Optimizer``.

    :returns: an iterable of ``OptimizerEntry``.
    """
    yield from ()


@hookspec
def alignkit_loggers() -> Iterable[LoggerEntry]:
    """Offer metric sinks (console, jsonl, wandb, ...).

    Called once when the registry is first read; ``logger.enabled=[...]`` picks them; each factory is called as
    ``factory(config, run_dir)`` and returns an ``alignkit.core.interfaces.MetricsLogger``.

    :returns: an iterable of ``LoggerEntry``.
    """
    yield from ()


@hookspec
def alignkit_generators() -> Iterable[GeneratorEntry]:
    """Offer generation backends: what samples responses for RL rollouts, labelling, best-of-n
    and AI judges (transformers ``generate`` built in; vLLM as the ``vllm`` extra).

    Called once when the registry is first read; ``generation=<name>`` picks one and each
    stage that samples calls ``factory(config)`` for an ``alignkit.core.interfaces.Generator``.
    A factory should import heavy engines lazily and may return another backend (with a
    warning) when its engine cannot run on this machine.

    :returns: an iterable of ``GeneratorEntry``.
    """
    yield from ()


@hookspec
def alignkit_config_searchpath() -> Iterable[str]:
    """Offer Hydra config roots whose groups extend alignkit's ``conf/``.

    Called by the CLI before Hydra composes the config, so a plugin's
    ``<root>/optimizer/<name>.yaml`` becomes ``optimizer=<name>``.

    :returns: an iterable of ``pkg://package.conf`` or ``file:///abs/path`` strings.
    """
    yield from ()


# --------------------------------------------------------------------------------------
# Resolver
# --------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def alignkit_load_model(spec: ModelSpec, role: ModelRole) -> LoadedModel | None:
    """Load the model and tokenizer that ``spec`` names, for ``role``.

    Called whenever a stage needs a policy, reference, reward or judge model. Return None
    when this plugin does not recognise the spec. Stops at first non-None result.

    :param spec: what ``model=...`` (or a stage's artifact) names.
    :param role: ``policy``, ``reference``, ``reward`` or ``judge``.
    :returns: a ``LoadedModel`` or None.
    """


# --------------------------------------------------------------------------------------
# Lifecycle
# --------------------------------------------------------------------------------------


@hookspec(historic=True)
def alignkit_configure(cfg: DictConfig) -> None:
    """Check or adjust the composed config before anything is built.

    Called once per run, after Hydra composed the config and before the first stage.
    Raise ``alignkit.core.ConfigError`` to reject it. Historic: a plugin registered
    later still receives the call.

    :param cfg: the composed config (mutable).
    """


@hookspec
def alignkit_before_run(run: RunContext) -> None:
    """Called once the run directory exists and before the first stage starts.

    :param run: the run's context (config, run directory, plugin registry).
    """


@hookspec
def alignkit_after_step(run: RunContext, stage: str, step: int, metrics: Mapping[str, float]) -> None:
    """Called after every logged training step of every stage.

    Call ``run.request_stop()`` to end the stage early (it still saves its model).

    :param run: the run's context.
    :param stage: the stage's name.
    :param step: the optimizer step just taken (1-based).
    :param metrics: the logged values of that step.
    """


@hookspec
def alignkit_after_stage(run: RunContext, stage: str, result: StageResult) -> None:
    """Called when a stage completed and its DONE marker is written.

    :param run: the run's context.
    :param stage: the stage's name.
    :param result: its final metrics and artifacts.
    """


@hookspec
def alignkit_after_run(run: RunContext, error: BaseException | None) -> None:
    """Always called at the end of a run, whether it completed or failed.

    Loggers flush here.

    :param run: the run's context.
    :param error: the exception that ended the run, or None on success.
    """
