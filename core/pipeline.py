"""The stage runner: turns a composed config into stages, runs them in order, resumes.

A pipeline is a list of stages in ``cfg.pipeline.stages``; each names what runs it (a training
algorithm, ``optimizer: dpo``, or a stage that samples, labels or evaluates, ``stage: evaluate``:
``core/stage_runs.py``) and the data it needs. Stages hand each other artifacts through the run
directory: a stage trains from the last ``model`` artifact of the stages before it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from omegaconf import DictConfig, OmegaConf

from alignkit.core import distributed
from alignkit.core.engine import Engine, TrainerConfig
from alignkit.core.errors import AlignkitError, ConfigError, WaitingForFeedback
from alignkit.core.interfaces import runs_data_parallel
from alignkit.core.options import build_component, did_you_mean, options_instance, validate_config  # noqa: F401 (re-exported)
from alignkit.core.registry import Registry
from alignkit.core.rundir import RunDir
from alignkit.core.stage_runs import stage_component, stage_runs
from alignkit.core.task import resolve_task
from alignkit.core.types import LoadedModel, ModelRole, ModelSpec, StageResult

if TYPE_CHECKING:
    import datasets

    from alignkit.core.interfaces import DataSource, FeedbackProvider, Generator, MetricsLogger, PreferenceModel

DATA_KINDS = ("sft", "preferences", "prompts")
"""Data a stage can read; a stage may also *produce* any of them as an artifact (see
``StageContext.dataset``): a folder holding ``train.jsonl`` and optionally ``eval.jsonl``."""

log = logging.getLogger("alignkit")


def _plain(node: Any) -> dict:
    if node is None:
        return {}
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)


class RunContext:
    """What every stage and lifecycle hook can see of the run."""

    def __init__(self, cfg: DictConfig, registry: Registry, run_dir: RunDir) -> None:
        self.cfg = cfg
        self.registry = registry
        self.run_dir = run_dir
        self.loggers: list[MetricsLogger] = []
        self._stop = False
        self._data: DataSource | None = None
        self._stage_data: dict[str, DataSource] = {}  # sources of stages with their own `data:` options
        self.generators: dict[str, Generator] = {}  # generation backends built so far, by name

    def request_stop(self) -> None:
        """Ask the running stage to stop after the current step (it still saves)."""
        self._stop = True

    @property
    def stop_requested(self) -> bool:
        return self._stop

    @property
    def data(self) -> DataSource:
        """The configured data source, built on first use."""
        if self._data is None:
            data_cfg = self.cfg.data
            self._data = build_component(self.registry, "data_source", str(data_cfg.name), data_cfg, self,
                                         group="data source")
        return self._data

    def data_for(self, options: Any = None, stage: str | None = None) -> DataSource:
        """The data source of a stage with its own ``data:`` options (``{preferences: harmless}``): the
        configured source built with those options over the run's (a ``name`` other than the run's
        starts afresh from them), once per distinct set of options; without options, ``data``."""
        overrides = _plain(options)
        if not overrides:
            return self.data
        key = repr(sorted(overrides.items()))
        if key not in self._stage_data:
            run_node = _plain(self.cfg.data)
            other_source = overrides.get("name", run_node["name"]) != run_node["name"]
            node = overrides if other_source else {**run_node, **overrides}
            try:
                self._stage_data[key] = build_component(self.registry, "data_source", str(node["name"]), node, self,
                                                        group="data source")
            except ConfigError as exc:
                raise ConfigError(f"stage '{stage}' reads its own data {overrides}: {exc}") from exc
        return self._stage_data[key]

    def model_spec(self, node: Any = None) -> ModelSpec:
        node = self.cfg.model if node is None else node
        return ModelSpec(
            name_or_path=str(node.name_or_path),
            revision=node.get("revision"),
            trust_remote_code=bool(node.get("trust_remote_code", False)),
            dtype=str(node.get("dtype", "float32")),
            options=_plain(node.get("options")),
        )

    @property
    def is_main_process(self) -> bool:
        """Under ``accelerate launch``: the one process that writes files and talks to people."""
        return self.run_dir.writer

    def log(self, stage: str, step: int, metrics: Mapping[str, float]) -> None:
        if not self.run_dir.writer:  # metrics are reported once, by the main process
            return
        self.run_dir.log_metrics(stage, step, metrics)
        for logger in self.loggers:
            logger.log(stage, step, metrics)
        self.registry.hook.alignkit_after_step(run=self, stage=stage, step=step, metrics=metrics)


@dataclasses.dataclass
class StageContext:
    """One stage's view: its config, folder, the policy to start from, and logging."""

    run: RunContext
    name: str
    index: int
    dir: Path
    config: DictConfig
    trainer: DictConfig
    policy: ModelSpec
    previous: dict[str, StageResult]
    data_options: Any = None  # the stage's own `data:` options over the run's (pipeline yaml), if any

    @property
    def data(self) -> DataSource:
        return self.run.data_for(self.data_options, self.name)

    def load_model(self, role: ModelRole = "policy", spec: ModelSpec | None = None) -> LoadedModel:
        return self.run.registry.load_model(spec or self.policy, role)

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.run.log(self.name, step, metrics)

    def trainer_settings(self) -> TrainerConfig:
        """The stage's validated ``trainer`` settings (see ``stage_trainer`` for their precedence)."""
        return options_instance("trainer", "trainer", TrainerConfig,
                                validate_config("trainer", "trainer", TrainerConfig, self.trainer))

    def engine(self) -> Engine:
        """A training engine that logs to this stage and stops when a hook requests it."""
        return Engine(self.trainer_settings(), self.dir, stage=self.name, log_fn=self.log,
                      should_stop=lambda: self.run.stop_requested)

    def artifact(self, path: Path) -> str:
        return str(path.resolve().relative_to(self.run.run_dir.path))

    def find_artifact(self, name: str, stage: str | None = None) -> Path | None:
        """The newest earlier stage's artifact ``name`` (e.g. ``reward_model``), as an absolute path;
        with ``stage``, that stage's own (``reward_safe``'s, when two stages train a reward model)."""
        return find_artifact(self.run, self.previous, name, stage)

    def dataset(self, kind: str, split: str) -> datasets.Dataset | None:
        """``sft``, ``preferences`` or ``prompts`` records for ``split``.

        An earlier stage that produced an artifact of that name (AI labels, revised answers)
        wins over the configured data source: that is how RLAIF feeds DPO or a reward model.
        The stage's own ``data:`` options win over both for the kinds they name.
        """
        return stage_dataset(self.run, self.previous, kind, split, self.data_options, self.name)

    def sample_prompts(self, split: str, *, limit: int = -1, prompt_filter: str | None = None, seed: int = 0,
                       option: str = "prompt_filter") -> list[Any]:
        """Prompt messages of ``split`` for stages that sample from the policy (label, best_of_n):
        those ``prompt_filter`` (``package.module:function(prompt) -> bool``) keeps, shuffled by
        ``seed``, at most ``limit`` (-1: all). ``option`` names the setting in error messages."""
        import random

        rows = self.dataset("prompts", split)
        if rows is None or limit == 0:
            return []
        prompts = [row["prompt"] for row in rows]
        if prompt_filter:
            from alignkit.core.callables import load_callable

            keep = load_callable(prompt_filter, what=option)
            prompts = [p for p in prompts if keep(p)]
        random.Random(seed).shuffle(prompts)
        return prompts if limit < 0 else prompts[:limit]

    def preference_model(self, node: Any = None) -> PreferenceModel:
        """Build the configured ``preference_model`` (or ``node``): factory(cfg, ctx)."""
        return self._component("preference_model", node if node is not None else self.run.cfg.get("preference_model"))

    def feedback(self, node: Any = None) -> FeedbackProvider:
        """Build the configured ``feedback`` provider (or ``node``): factory(cfg, ctx)."""
        return self._component("feedback_provider", node if node is not None else self.run.cfg.get("feedback"))

    def generator(self) -> Generator:
        """The configured generation backend (``generation=<name>``; transformers when unset), built
        once per run and shared by its stages (a vLLM engine is expensive to start)."""
        node = self.run.cfg.get("generation")
        name = str(node.get("name")) if node is not None and node.get("name") else "transformers"
        cache = self.run.generators
        if name not in cache:  # ctx: the RunContext, as the backend serves every stage of the run
            cache[name] = build_component(self.run.registry, "generator", name,
                                          node if node is not None else {"name": name}, self.run, group="generation")
        return cache[name]

    def _component(self, kind: str, node: Any) -> Any:
        group = {"preference_model": "preference_model", "feedback_provider": "feedback"}[kind]
        if node is None or node.get("name") is None:
            raise ConfigError(f"stage '{self.name}' needs a {group}: add {group}=<name> to the command line")
        return build_component(self.run.registry, kind, str(node.get("name")), node, self, group=group)


def find_artifact(run: RunContext, previous: Mapping[str, StageResult], name: str,
                  stage: str | None = None) -> Path | None:
    results = list(previous.values()) if stage is None else [previous[stage]] if stage in previous else []
    for result in reversed(results):
        if name in result.artifacts:
            return run.run_dir.path / result.artifacts[name]
    return None


def stage_dataset(run: RunContext, previous: Mapping[str, StageResult], kind: str, split: str,
                  data_options: Any = None, stage: str | None = None) -> Any:
    if kind not in DATA_KINDS:
        raise ConfigError(f"unknown data kind '{kind}'; the kinds are: {', '.join(DATA_KINDS)}")
    own = _plain(data_options)
    # a stage's own `data: {preferences: ...}` is what it reads, whatever earlier stages produced
    folder = None if kind in own or f"eval_{kind}" in own else find_artifact(run, previous, kind)
    if folder is not None:
        file = folder / f"{split}.jsonl"
        if not file.exists():
            return None
        import datasets

        from alignkit.core.records_io import read_jsonl

        rows = read_jsonl(file)
        return datasets.Dataset.from_list(rows) if rows else None
    return getattr(run.data_for(data_options, stage), kind)(split)


def stage_plan(cfg: DictConfig) -> list[DictConfig]:
    """The stages to run, in order, with the ``repeat: true`` block expanded into rounds."""
    stages = cfg.pipeline.get("stages")
    if not stages:
        raise ConfigError(f"pipeline '{cfg.pipeline.get('name')}' lists no stages")
    plan = expand_rounds(list(stages), cfg.pipeline.get("rounds"))
    names = [str(stage.name) for stage in plan]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"pipeline '{cfg.pipeline.get('name')}' names more than one stage {', '.join(twice)}")
    return plan


def skipped_stages(cfg: DictConfig, plan: list[DictConfig]) -> set[str]:
    """The stages ``pipeline.skip`` leaves out: each entry names a pipeline stage, or the algorithm or
    stage it runs (``pipeline.skip=[evaluate]`` leaves out every round's evaluate stage too)."""
    wanted = [str(item) for item in (cfg.pipeline.get("skip") or [])]
    known = {str(s.name) for s in plan} | {stage_runs(s) for s in plan}
    unknown = [item for item in wanted if item not in known]
    if unknown:
        raise ConfigError(f"pipeline.skip names {', '.join(repr(u) for u in unknown)}, which pipeline "
                          f"'{cfg.pipeline.get('name')}' does not run; its stages: "
                          f"{', '.join(str(s.name) for s in plan)}")
    return {str(s.name) for s in plan if str(s.name) in wanted or stage_runs(s) in wanted}


def expand_rounds(stages: list[DictConfig], rounds: Any = None) -> list[DictConfig]:
    """Repeat the consecutive stages marked ``repeat: true`` ``rounds`` times (default 1).

    Round k's copy of stage ``label`` is named ``label_k`` and carries ``round: k``; a repeated
    stage whose ``config`` has an integer ``seed`` gets ``seed + k - 1``, so every round samples
    afresh. Each copy trains from the last model before it, like any stage: round k starts from
    round k-1's policy.
    """
    marked = [i for i, stage in enumerate(stages) if stage.get("repeat", False)]
    if not marked:
        if rounds is not None and int(rounds) != 1:
            raise ConfigError(f"pipeline.rounds={rounds}, but no stage of the pipeline has 'repeat: true'")
        return stages
    if marked != list(range(marked[0], marked[-1] + 1)):
        raise ConfigError("the stages marked 'repeat: true' must follow each other (one block of rounds)")
    count = 1 if rounds is None else int(rounds)
    if count < 1:
        raise ConfigError(f"pipeline.rounds must be at least 1, not {rounds}")
    block = [OmegaConf.to_container(stage, resolve=True) for stage in stages[marked[0]:marked[-1] + 1]]
    out = stages[:marked[0]]
    for k in range(1, count + 1):
        for stage in block:
            copy = dict(stage, name=f"{stage['name']}_{k}", round=k)
            copy.pop("repeat", None)
            config = copy.get("config")
            seed = config.get("seed") if isinstance(config, dict) else None
            if isinstance(seed, int) and not isinstance(seed, bool):
                copy["config"] = dict(config, seed=seed + k - 1)
            out.append(OmegaConf.create(copy))
    return out + stages[marked[-1] + 1:]


ROUNDS = "rounds.jsonl"


def write_rounds(rd: RunDir, plan: list[DictConfig]) -> None:
    """``rounds.jsonl``: one line per round with the final metrics of its completed stages, keyed
    ``<stage without the round suffix>/<metric>`` so the same key follows a quantity across rounds."""
    import json

    from alignkit.core.rundir import atomic_write_text

    rows: dict[int, dict[str, Any]] = {}
    for stage in plan:
        k = stage.get("round")
        record = rd.summary["stages"].get(str(stage.name), {})
        if k is None or record.get("status") != "completed":
            continue
        base = str(stage.name)[: -len(f"_{k}")]
        row = rows.setdefault(int(k), {"round": int(k), "stages": [], "metrics": {}})
        row["stages"].append(str(stage.name))
        row["metrics"].update({f"{base}/{key}": value for key, value in record.get("metrics", {}).items()})
    if rd.writer:
        atomic_write_text(rd.path / ROUNDS, "".join(json.dumps(row) + "\n" for row in rows.values()))


def stage_options_node(cfg: DictConfig, stage: DictConfig) -> dict:
    """A stage's optimizer options as a plain dict, ``trainer`` left out (``stage_trainer``): the
    ``optimizer`` node when the stage runs ``${optimizer.name}``, merged with the stage's ``config``,
    then the model's ``recipe.<name>`` (``model_recipe``), then the command line's ``<key>.K=v``."""
    node: Any = OmegaConf.create({})
    if _runs_configured_optimizer(cfg, stage):
        node = cfg.optimizer
    if stage.get("config"):
        node = OmegaConf.merge(OmegaConf.create(OmegaConf.to_container(node, resolve=True)), stage.config)
    recipe = model_recipe(cfg, stage_runs(stage))
    if recipe is not None:  # the model's recipe over the stage's own, the command line over both
        key = stage_settings_key(cfg, stage)
        node = OmegaConf.merge(OmegaConf.create(OmegaConf.to_container(node, resolve=True)), recipe,
                               _command_line_node(cfg, f"{key}.") if key else {})
    data = OmegaConf.to_container(node, resolve=True)
    data.pop("trainer", None)
    return data


def optimizer_config(cfg: DictConfig, registry: Registry, stage: DictConfig) -> tuple[Any, tuple[DictConfig, DictConfig]]:
    """A stage's entry (a training algorithm's or a stage's, ``core/stage_runs.py``) and ``(validated
    options, its trainer settings)``: the options as ``stage_options_node`` merges them, the settings
    as ``stage_trainer`` layers them."""
    found = stage_component(registry, stage)
    options = validate_config(found.kind, found.name, found.entry.config_schema, stage_options_node(cfg, stage))
    return found.entry, (options, stage_trainer(cfg, stage))


def _runs_configured_optimizer(cfg: DictConfig, stage: DictConfig) -> bool:
    """The stage runs ``${optimizer.name}``: its options come from the ``optimizer`` node."""
    runs = stage.get("optimizer")
    return runs is not None and cfg.get("optimizer") is not None and cfg.optimizer.get("name") == str(runs)


def stage_settings_key(cfg: DictConfig, stage: DictConfig) -> str | None:
    """The top-level node a stage's options come from: ``optimizer`` for the stage that runs
    ``${optimizer.name}``, ``label`` for ``config: ${label}``; None for options written in the stage."""
    if _runs_configured_optimizer(cfg, stage):
        return "optimizer"
    text = OmegaConf.to_container(stage, resolve=False).get("config")
    if isinstance(text, str) and text.startswith("${") and text.endswith("}"):
        return text[2:-1]
    return None


def command_line_overrides() -> list[str]:
    """The overrides of this job as Hydra records them (``hydra.overrides.task``): under the
    ``alignkit`` app, and under ``alignkit.core.testing.compose``, which sets ``HydraConfig`` as
    ``@hydra.main`` does (``as_hydra_job``). Empty for a config Hydra did not compose."""
    try:
        from hydra.core.hydra_config import HydraConfig

        # unresolved: an override may hold an interpolation (pipeline.stages=[{config: ${label}}])
        return [str(o) for o in OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False)]
    except (ImportError, ValueError):
        return []


def _command_line(cfg: DictConfig | None = None) -> list[str]:  # the name core/preflight.py imports
    return command_line_overrides()


def as_hydra_job(cfg: DictConfig) -> DictConfig:
    """For a caller of Hydra's compose API (``compose(..., return_hydra_config=True)``): record the
    job's ``hydra`` node in ``HydraConfig`` as ``@hydra.main`` does, and return the config without it."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def _command_line_node(cfg: DictConfig, prefix: str) -> DictConfig:
    """The keys under ``prefix`` (``trainer.``, ``evaluate.``) this job's command line set, with
    their composed values, ``prefix`` taken off."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    node = OmegaConf.create({})
    # only overrides that can set a key under prefix are parsed: the others may be anything Hydra took
    mentioned = [o for o in command_line_overrides() if prefix in o.split("=", 1)[0]]
    for override in OverridesParser.create().parse_overrides(mentioned):
        name = override.key_or_group
        if override.is_delete() or override.package is not None or not name.startswith(prefix):
            continue
        value = OmegaConf.select(cfg, name, default=None)
        if value is not None:
            OmegaConf.update(node, name[len(prefix):], value, force_add=True)
    return node


def _command_line_trainer(cfg: DictConfig, key: str | None) -> DictConfig:
    """The trainer keys this job's command line set, with their composed values: ``trainer.K`` for
    every stage, then ``<key>.trainer.K`` (``optimizer.trainer.K``) for the stage whose options
    live at ``key`` (the more specific one wins)."""
    general = _command_line_node(cfg, "trainer.")
    return OmegaConf.merge(general, _command_line_node(cfg, f"{key}.trainer.")) if key else general


def model_recipe(cfg: DictConfig, name: str) -> DictConfig | None:
    """The model file's ``recipe.<name>``: ``trainer`` (every stage's trainer settings) or the options
    of the stages that run ``name`` (``evaluate``, ``dpo``), e.g. a smoke model's fewer steps
    (conf/model/tiny-random.yaml). It ranks just below the command line."""
    model = cfg.get("model")
    recipe = model.get("recipe") if isinstance(model, DictConfig) else None
    return recipe.get(name) if isinstance(recipe, DictConfig) else None


def stage_trainer(cfg: DictConfig, stage: DictConfig) -> DictConfig:
    """A stage's trainer settings, the one place they are layered. Precedence, highest first:

    1. the command line: ``trainer.K=v`` (every stage), ``optimizer.trainer.K=v`` (the stage that
       runs ``${optimizer.name}``; ``label.trainer.K=v`` for ``config: ${label}``);
    2. the model's recipe: ``recipe.trainer`` of its file (conf/model/tiny-random.yaml's few steps);
    3. the pipeline stage: its ``config: {trainer: {...}}`` (conf/pipeline/dpo.yaml);
    4. the optimizer file: its ``trainer:`` node (conf/optimizer/ppo.yaml);
    5. the trainer defaults: ``trainer.*`` of conf/config.yaml over ``TrainerConfig``.

    Which keys the command line set is read from Hydra's record of the job's overrides
    (``command_line_overrides``), never from ``sys.argv``."""
    layers: list[Any] = [cfg.trainer]
    if _runs_configured_optimizer(cfg, stage) and cfg.optimizer.get("trainer") is not None:
        layers.append(cfg.optimizer.trainer)
    config = stage.get("config")
    if isinstance(config, DictConfig) and config.get("trainer") is not None:
        layers.append(config.trainer)
    recipe = model_recipe(cfg, "trainer")
    if recipe is not None:
        layers.append(recipe)
    layers.append(_command_line_trainer(cfg, stage_settings_key(cfg, stage)))
    return OmegaConf.merge(*layers)


def explicit_trainer(cfg: DictConfig) -> DictConfig:
    """The ``trainer.*`` keys this job's command line set (kept for callers of 1.0)."""
    return _command_line_trainer(cfg, None)


def _has_data(run: RunContext, previous: Mapping[str, StageResult], kind: str, stage: DictConfig) -> bool:
    if kind not in DATA_KINDS:
        raise ConfigError(f"unknown data kind '{kind}' in a pipeline stage's 'requires'")
    return stage_dataset(run, previous, kind, "train", stage.get("data"), str(stage.name)) is not None


def run_pipeline(cfg: DictConfig, run_dir: str | Path, registry: Registry | None = None) -> RunDir:
    """Run every stage of ``cfg.pipeline``, skipping those already DONE.

    Lifecycle hooks fire around it; ``alignkit_after_run`` fires even when a stage fails.
    """
    registry = registry or Registry()
    registry.hook.alignkit_configure.call_historic(kwargs={"cfg": cfg})
    plan = stage_plan(cfg)
    # Resolve every name before any work: an unknown name fails fast with the list.
    registry.get("data_source", str(cfg.data.name))
    for stage in plan:  # `optimizer: evaluate` of a pipeline of hooks 1.1: said once, here
        stage_component(registry, stage, warn=True)
    # Every stage's options, components, functions and models, before the first stage trains.
    from alignkit.core.preflight import preflight

    preflight(cfg, registry)
    skip = skipped_stages(cfg, plan)
    rd = RunDir(run_dir, pipeline=str(cfg.pipeline.name))
    rd.summary["status"] = "running"
    rd.summary.pop("message", None)
    rd.summary.pop("feedback", None)
    rd.record_data_files(cfg.get("data"))  # absolute paths and sha256: evaluate/resume from any folder
    rd.write_summary()
    # Under N processes: every process decides what is done before the main one writes anything.
    done = {index: rd.is_done(index, str(stage.name)) for index, stage in enumerate(plan, start=1)}
    distributed.barrier()
    run = RunContext(cfg, registry, rd)
    run.loggers = _build_loggers(run) if rd.writer else []
    registry.hook.alignkit_before_run(run=run)
    error: BaseException | None = None
    try:
        policy = run.model_spec()
        previous: dict[str, StageResult] = {}
        for index, stage in enumerate(plan, start=1):
            name = str(stage.name)
            if done[index]:
                result = rd.stage_result(name)
                log.info("stage %s already done; skipping", name)
            elif name in skip:
                rd.set_stage(name, "skipped")
                log.info("stage %s skipped: pipeline.skip", name)
                continue
            else:
                requires = stage.get("requires")
                if requires and not _has_data(run, previous, str(requires), stage):
                    if stage.get("optional", False):
                        rd.set_stage(name, "skipped")
                        log.info("stage %s skipped: no %s data configured", name, requires)
                        continue
                    raise ConfigError(
                        f"stage '{name}' of pipeline '{cfg.pipeline.name}' needs {requires} data, "
                        f"and data '{cfg.data.name}' provides none"
                    )
                entry, (opt_cfg, trainer) = optimizer_config(cfg, registry, stage)
                # `prompt_filter: task`, `scorers: [task]`: what the stage's data declares (core/task.py)
                opt_cfg = resolve_task(opt_cfg, lambda: run.data_for(stage.get("data"), name))
                ctx = StageContext(run=run, name=name, index=index, dir=rd.stage_dir(index, name),
                                   config=opt_cfg, trainer=trainer, policy=policy, previous=dict(previous),
                                   data_options=stage.get("data"))
                rd.set_stage(name, "running")
                run._stop = False
                started = time.time()
                optimizer = build_component(registry, entry.kind, entry.name, opt_cfg, ctx)  # optimizer or stage
                if runs_data_parallel(optimizer):
                    result = optimizer.run(ctx)
                else:  # labelling, evaluation: the main process works, the others take its result
                    result = distributed.run_on_main(lambda: optimizer.run(ctx))
                result.metrics.setdefault("stage_seconds", round(time.time() - started, 2))
                rd.mark_done(index, name, result)
                if stage.get("round") is not None:
                    write_rounds(rd, plan)
                distributed.barrier()  # the next stage reads what this one wrote
                registry.hook.alignkit_after_stage(run=run, stage=name, result=result)
            previous[name] = result
            if "model" in result.artifacts:
                policy = dataclasses.replace(policy, name_or_path=str(rd.path / result.artifacts["model"]), options={})
        rd.finish("completed")
    except WaitingForFeedback as exc:  # not a failure: people have labels to give first
        error = exc
        for record in rd.summary["stages"].values():
            if record.get("status") == "running":
                record["status"] = "waiting"
        rd.summary["message"] = str(exc)
        rd.summary["feedback"] = {"labelled": exc.labelled, "total": exc.total, "url": exc.url}
        rd.finish("waiting")
        raise
    except BaseException as exc:
        error = exc
        message = str(exc) if isinstance(exc, AlignkitError) else "".join(
            traceback.format_exception_only(type(exc), exc)).strip()
        for stage_name, record in rd.summary["stages"].items():
            if record.get("status") == "running":
                record["status"] = "failed"
        rd.finish("failed", message)
        raise
    finally:
        for logger in run.loggers:
            try:
                logger.close(rd.summary)
            except Exception:  # a failing sink must not hide the run's own error
                log.exception("logger failed to close")
        registry.hook.alignkit_after_run(run=run, error=error)
    return rd


def _build_loggers(run: RunContext) -> list[MetricsLogger]:
    node = run.cfg.get("logger") or {}
    loggers = []
    for name in node.get("enabled", []) or []:
        options = node.get(str(name), {}) or {}  # ctx: the RunContext (run.run_dir.path is the folder)
        loggers.append(build_component(run.registry, "logger", str(name), options, run))
    return loggers
