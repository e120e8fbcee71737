"""The alignkit plugin contract: every hook, typed and documented.

A plugin is a module or object whose functions are marked with ``@alignkit.core.hookimpl``
and named after a spec below. Built-ins and third-party packages register the same way,
through the ``alignkit`` entry-point group.

Three kinds of hook:

* **Registries** (called for every plugin, results flattened): return an iterable of
  frozen ``*Entry`` records. A name offered twice is an error naming both providers.
  The core validates a component's config node into its entry's ``config_schema`` dataclass
  and calls every factory the same way, ``factory(options, ctx)`` (``core/options.py``):
  ``options`` is that dataclass instance (the ``DictConfig`` when there is no schema); ``ctx``
  is written under each hook below. A factory of alignkit 1.0 (``factory(config)``, a
  logger's ``factory(config, run_dir)``) is still called so for this version, with a
  ``DeprecationWarning`` naming its plugin.
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
        AdvantageEstimatorEntry,
        CommandEntry,
        DataSourceEntry,
        FeedbackProviderEntry,
        GeneratorEntry,
        LoadedModel,
        LoggerEntry,
        ModelRole,
        ModelSpec,
        OptimizerEntry,
        PolicyLossEntry,
        PreferenceModelEntry,
        StageEntry,
        StageResult,
    )

PROJECT = "alignkit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

ALIGNKIT_HOOKS_VERSION = "1.2"
"""The version of this contract: the minor part goes up when a hook is added, the major part
when a hook is removed or changes meaning. A plugin module may declare the versions it was
written for, ``alignkit_requires = ">=1.0,<2"``; a plugin outside its range is not loaded and
the message says which side to upgrade.

1.1 added ``alignkit_advantage_estimators``, ``alignkit_policy_losses`` and ``alignkit_commands``.
1.2 added ``alignkit_stages`` (stages that sample, label or evaluate, apart from training algorithms)."""


# --------------------------------------------------------------------------------------
# Registries: each returns an iterable of records
# --------------------------------------------------------------------------------------


@hookspec
def alignkit_data_sources() -> Iterable[DataSourceEntry]:
    """Offer data sources: loaders of SFT examples, preference pairs and prompt pools.

    Called once when the registry is first read. ``data=<name>`` picks one; the run calls
    ``factory(options, ctx)`` with the validated ``data`` options and ``ctx`` the
    ``RunContext`` (the data serves every stage: ``ctx.registry``, ``ctx.run_dir``; ctx is None
    when ``alignkit data`` reads a source outside any run). It must return an object
    implementing ``alignkit.core.interfaces.DataSource``.

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
    config node against the entry's ``config_schema`` and calls ``factory(options, ctx)`` (``ctx``
    is the asking stage's ``StageContext``: models, earlier artifacts, the run directory). It returns an
    object implementing ``alignkit.core.interfaces.FeedbackProvider``.

    :returns: an iterable of ``FeedbackProviderEntry``.

    Example::

        @hookimpl
        def alignkit_feedback_providers():
            yield FeedbackProviderEntry(name="length", factory=length_judge, config_schema=LengthJudgeConfig,
                                        description="the longer response wins")
    """
    yield from ()


@hookspec
def alignkit_preference_models() -> Iterable[PreferenceModelEntry]:
    """Offer preference models: scorers of responses (reward models, rules, implicit rewards).

    Called once when the registry is first read; ``preference_model=<name>`` picks one. A stage
    that scores responses (PPO, evaluation, best-of-n) calls ``ctx.preference_model()``, which
    validates the ``preference_model`` node and calls ``factory(options, ctx)`` (``ctx``: the
    asking stage's ``StageContext``; None when curation scores data outside any run); it
    returns an object implementing ``alignkit.core.interfaces.PreferenceModel``.

    :returns: an iterable of ``PreferenceModelEntry``.

    Example::

        @hookimpl
        def alignkit_preference_models():
            yield PreferenceModelEntry(name="length", factory=length_scorer, config_schema=LengthScorerConfig,
                                       description="longer responses score higher")
    """
    yield from ()


@hookspec
def alignkit_optimizers() -> Iterable[OptimizerEntry]:
    """Offer policy optimizers: the training algorithms of pipeline stages (sft, dpo, ...).

    Called once when the registry is first read. A pipeline stage names an optimizer; the
    runner validates the stage's options against the entry's ``config_schema`` and calls
    ``factory(options, ctx)`` with ``ctx`` the stage's ``StageContext`` (the one ``run(ctx)``
    then gets), which returns an object implementing ``alignkit.core.interfaces.Optimizer``.

    :returns: an iterable of ``OptimizerEntry``.

    Example::

        @hookimpl
        def alignkit_optimizers():
            yield OptimizerEntry(name="kto", factory=KTOOptimizer, config_schema=KTOConfig,
                                 description="KTO on unpaired good/bad labels")
    """
    yield from ()


@hookspec
def alignkit_stages() -> Iterable[StageEntry]:
    """Offer pipeline stages that train nothing: they sample, label or evaluate (label, evaluate,
    best_of_n, critique_revise), apart from the training algorithms of ``alignkit_optimizers``.

    Called once when the registry is first read. A pipeline stage names one with ``stage: <name>``
    (``optimizer: <name>`` names a training algorithm); the runner validates the stage's options
    against the entry's ``config_schema`` and calls ``factory(options, ctx)`` with ``ctx`` the
    stage's ``StageContext``, which returns an object with ``run(ctx) -> StageResult`` (as
    ``alignkit.core.interfaces.Optimizer``). A stage of hooks version 1.1, offered through
    ``alignkit_optimizers``, still runs under ``optimizer: <name>``.

    :returns: an iterable of ``StageEntry``.

    Example::

        @hookimpl
        def alignkit_stages():
            yield StageEntry(name="toxicity_eval", factory=ToxicityEval, config_schema=ToxicityEvalConfig,
                             description="share of the policy's answers a classifier flags")
    """
    yield from ()


@hookspec
def alignkit_loggers() -> Iterable[LoggerEntry]:
    """Offer metric sinks (built in: ``console``, ``wandb``; ``metrics.jsonl`` is the run directory's own).

    Called once when the registry is first read; ``logger.enabled=[...]`` picks them; each factory is called as
    ``factory(options, ctx)`` with the validated ``logger.<name>`` options and ``ctx`` the
    ``RunContext`` (no stage exists yet; ``ctx.run_dir.path`` is the run directory), and returns an
    ``alignkit.core.interfaces.MetricsLogger``.

    :returns: an iterable of ``LoggerEntry``.

    Example::

        @hookimpl
        def alignkit_loggers():
            yield LoggerEntry(name="csv", factory=CsvLogger, description="one CSV row per logged step")
    """
    yield from ()


@hookspec
def alignkit_generators() -> Iterable[GeneratorEntry]:
    """Offer generation backends: what samples responses for RL rollouts, labelling, best-of-n
    and AI judges (built in: ``transformers``, ``kv``, and ``vllm`` with the ``vllm`` extra).

    Called once when the registry is first read; ``generation=<name>`` picks one; the first
    stage that samples calls ``factory(options, ctx)`` with ``ctx`` the ``RunContext`` (one
    backend, built once, serves every stage of the run) for an ``alignkit.core.interfaces.Generator``.
    A factory should import heavy engines lazily and may return another backend (with a
    warning) when its engine cannot run on this machine.

    :returns: an iterable of ``GeneratorEntry``.

    Example::

        @hookimpl
        def alignkit_generators():
            yield GeneratorEntry(name="sglang", factory=SGLangGenerator, config_schema=SGLangConfig,
                                 description="samples through an SGLang engine")
    """
    yield from ()


@hookspec
def alignkit_advantage_estimators() -> Iterable[AdvantageEstimatorEntry]:
    """Offer advantage estimators: how on-policy RL turns scores into per-token advantages.

    Called once when the registry is first read; ``optimizer.advantage=<name>`` picks one. The RL
    loop calls ``estimate(AdvantageInputs)`` every step with one process's rows (whole groups of
    ``group_size`` responses per prompt, the KL penalty, the critic's values when ``needs_critic``)
    and reads ``AdvantageOutputs``: advantages [B, T], 0 off the response mask (and the critic's
    returns). It is a pure function: no model, no state; a batch-wide statistic goes through
    ``inputs.reducer`` so N processes compute what one would. See ``alignkit.core.rl``;
    ``alignkit.core.testing.AdvantageEstimatorContract`` checks one.

    :returns: an iterable of ``AdvantageEstimatorEntry``.

    Example::

        @hookimpl
        def alignkit_advantage_estimators():
            yield AdvantageEstimatorEntry(name="median_baseline", estimate=median_baseline,
                                          description="score minus the group's median")
    """
    yield from ()


@hookspec
def alignkit_policy_losses() -> Iterable[PolicyLossEntry]:
    """Offer policy losses: what on-policy RL minimises given the advantages.

    Called once when the registry is first read; ``optimizer.policy_loss=<name>`` picks one. The
    RL loop calls ``loss(PolicyLossInputs)`` on every micro-batch (new, old and reference
    log-probs, advantages, mask) and reads ``PolicyLossOutputs``: per-token loss terms [b, t]
    that it aggregates (``optimizer.loss_aggregation``) and metrics. A ``pairwise`` loss gets
    chosen/rejected pairs of rows instead (online DPO). See ``alignkit.core.rl``;
    ``alignkit.core.testing.PolicyLossContract`` checks one.

    :returns: an iterable of ``PolicyLossEntry``.

    Example::

        @hookimpl
        def alignkit_policy_losses():
            yield PolicyLossEntry(name="my_clip", loss=my_clipped_loss, description="...")
    """
    yield from ()


@hookspec
def alignkit_commands() -> Iterable[CommandEntry]:
    """Offer subcommands of the ``alignkit`` command line: ``alignkit <name> ...``.

    Called by the CLI when the first argument is a bare word (no ``=``) and by ``alignkit --help``,
    which lists every command with its ``help`` line and package. The built-in commands (``plugins``,
    ``plugin``, ``runs``, ``resume``, ``evaluate``, ``report``, ``label``, ``data``) come through this
    hook too, so ``ALIGNKIT_DISABLE_PLUGINS=<plugin>`` removes a plugin's commands with the rest of it
    and a name two plugins offer is an error naming both. ``run(argv)`` receives the arguments after
    the name (``--help`` included: parse them with ``argparse``) and returns the exit status.

    Until alignkit 1.2 a command declared in the old ``alignkit.commands`` entry-point group still
    runs, with a ``DeprecationWarning``.

    :returns: an iterable of ``CommandEntry``.

    Example::

        def hello(argv):
            parser = argparse.ArgumentParser(prog="alignkit hello")
            parser.add_argument("name", nargs="?", default="world")
            print(f"hello, {parser.parse_args(argv).name}")
            return 0

        @hookimpl
        def alignkit_commands():
            yield CommandEntry(name="hello", run=hello, help="greet someone", usage="[NAME]")
    """
    yield from ()


@hookspec
def alignkit_config_searchpath() -> Iterable[str]:
    """Offer Hydra config roots whose groups extend alignkit's ``conf/``.

    Called by the CLI before Hydra composes the config, so a plugin's
    ``<root>/optimizer/<name>.yaml`` becomes ``optimizer=<name>``.

    :returns: an iterable of ``pkg://package.conf`` or ``file:///abs/path`` strings.

    Example::

        @hookimpl
        def alignkit_config_searchpath():
            yield "pkg://alignkit_kto.conf"  # its optimizer/kto.yaml becomes optimizer=kto
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

    Example::

        @hookimpl
        def alignkit_load_model(spec, role):
            if not spec.name_or_path.startswith("mycloud://"):
                return None  # not ours: the next plugin tries
            model, tokenizer = download_from_mycloud(spec.name_or_path, spec.revision)
            return LoadedModel(model=model, tokenizer=tokenizer, source=spec.name_or_path)
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

    Example::

        @hookimpl
        def alignkit_configure(cfg):
            if cfg.get("optimizer", {}).get("name") == "kto" and cfg.data.name == "demo":
                raise ConfigError("optimizer=kto needs unpaired labels: use data=files data.kto=...")
    """


@hookspec
def alignkit_before_run(run: RunContext) -> None:
    """Called once the run directory exists and before the first stage starts.

    :param run: the run's context (config, run directory, plugin registry).

    Example::

        @hookimpl
        def alignkit_before_run(run):
            if run.is_main_process:
                (run.run_dir.path / "host.txt").write_text(socket.gethostname())
    """


@hookspec
def alignkit_after_step(run: RunContext, stage: str, step: int, metrics: Mapping[str, float]) -> None:
    """Called after every logged training step of every stage.

    Call ``run.request_stop()`` to end the stage early (it still saves its model).

    :param run: the run's context.
    :param stage: the stage's name.
    :param step: the optimizer step just taken (1-based).
    :param metrics: the logged values of that step.

    Example::

        @hookimpl
        def alignkit_after_step(run, stage, step, metrics):
            if metrics.get("loss", 0.0) > 20.0:  # diverging: stop and keep what was learnt
                run.request_stop()
    """


@hookspec
def alignkit_after_stage(run: RunContext, stage: str, result: StageResult) -> None:
    """Called when a stage completed and its DONE marker is written.

    :param run: the run's context.
    :param stage: the stage's name.
    :param result: its final metrics and artifacts.

    Example::

        @hookimpl
        def alignkit_after_stage(run, stage, result):
            notify(f"stage {stage} done: {dict(result.metrics)}")
    """


@hookspec
def alignkit_after_run(run: RunContext, error: BaseException | None) -> None:
    """Always called at the end of a run, whether it completed or failed.

    Loggers flush here.

    :param run: the run's context.
    :param error: the exception that ended the run, or None on success.

    Example::

        @hookimpl
        def alignkit_after_run(run, error):
            notify(f"run {run.run_dir.path} " + ("failed: " + str(error) if error else "completed"))
    """
