"""The stage runner: turns a composed config into stages, runs them in order, resumes.

A pipeline is a list of stages in ``cfg.pipeline.stages``; each names the optimizer that
runs it and the data it needs. Stages hand each other artifacts through the run
directory: a stage trains from the last ``model`` artifact of the stages before it.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from omegaconf import DictConfig, OmegaConf

from alignkit.core import distributed
from alignkit.core.engine import Engine, TrainerConfig
from alignkit.core.errors import AlignkitError, ConfigError, WaitingForFeedback
from alignkit.core.registry import Registry
from alignkit.core.rundir import RunDir
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


def did_you_mean(unknown: list[str], allowed: Any) -> str:
    """`` (did you mean 'beta'?)`` for each unknown name with a close allowed one, else ``""``."""
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(allowed), n=1)
        if close:
            hints.append(f"'{close[0]}'" if len(unknown) == 1 else f"'{close[0]}' for '{name}'")
    return f" (did you mean {', '.join(hints)}?)" if hints else ""


def validate_config(entry_kind: str, name: str, schema: type | None, node: Any) -> DictConfig:
    """Merge ``node`` into the entry's schema: unknown keys and wrong types are errors."""
    node = OmegaConf.create({}) if node is None else node
    if schema is None:
        return node if isinstance(node, DictConfig) else OmegaConf.create(node)
    base = OmegaConf.structured(schema)
    data = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    data.pop("name", None)
    allowed = {f.name for f in dataclasses.fields(schema)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"{entry_kind} '{name}' has no option {', '.join(repr(u) for u in unknown)}"
            f"{did_you_mean(unknown, allowed)}; its options are: {', '.join(sorted(allowed))}"
        )
    try:
        merged = OmegaConf.merge(base, data)
    except Exception as exc:  # omegaconf's validation error says which key and type
        raise ConfigError(f"{entry_kind} '{name}': {exc}") from exc
    OmegaConf.set_struct(merged, False)
    merged.name = name
    return merged


class RunContext:
    """What every stage and lifecycle hook can see of the run."""

    def __init__(self, cfg: DictConfig, registry: Registry, run_dir: RunDir) -> None:
        self.cfg = cfg
        self.registry = registry
        self.run_dir = run_dir
        self.loggers: list[MetricsLogger] = []
        self._stop = False
        self._data: DataSource | None = None
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
            entry = self.registry.get("data_source", data_cfg.name)
            self._data = entry.factory(validate_config("data source", entry.name, entry.config_schema, data_cfg))
        return self._data

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

    @property
    def data(self) -> DataSource:
        return self.run.data

    def load_model(self, role: ModelRole = "policy", spec: ModelSpec | None = None) -> LoadedModel:
        return self.run.registry.load_model(spec or self.policy, role)

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.run.log(self.name, step, metrics)

    def trainer_settings(self) -> TrainerConfig:
        """The stage's validated ``trainer`` node (global defaults merged with the optimizer's own)."""
        node = validate_config("trainer", "trainer", TrainerConfig, self.trainer)
        data = OmegaConf.to_container(node, resolve=True)
        data.pop("name", None)
        return TrainerConfig(**data)

    def engine(self) -> Engine:
        """A training engine that logs to this stage and stops when a hook requests it."""
        return Engine(self.trainer_settings(), self.dir, stage=self.name, log_fn=self.log,
                      should_stop=lambda: self.run.stop_requested)

    def artifact(self, path: Path) -> str:
        return str(path.resolve().relative_to(self.run.run_dir.path))

    def find_artifact(self, name: str) -> Path | None:
        """The newest earlier stage's artifact ``name`` (e.g. ``reward_model``), as an absolute path."""
        return find_artifact(self.run, self.previous, name)

    def dataset(self, kind: str, split: str) -> datasets.Dataset | None:
        """``sft``, ``preferences`` or ``prompts`` records for ``split``.

        An earlier stage that produced an artifact of that name (AI labels, revised answers)
        wins over the configured data source: that is how RLAIF feeds DPO or a reward model.
        """
        return stage_dataset(self.run, self.previous, kind, split)

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
        if name not in cache:
            entry = self.run.registry.get("generator", name)
            cfg = validate_config("generation", entry.name, entry.config_schema,
                                  node if node is not None else OmegaConf.create({"name": name}))
            cache[name] = entry.factory(cfg)
        return cache[name]

    def _component(self, kind: str, node: Any) -> Any:
        group = {"preference_model": "preference_model", "feedback_provider": "feedback"}[kind]
        if node is None or node.get("name") is None:
            raise ConfigError(f"stage '{self.name}' needs a {group}: add {group}=<name> to the command line")
        entry = self.run.registry.get(kind, str(node.get("name")))
        cfg = validate_config(group, entry.name, entry.config_schema, node)
        return entry.factory(cfg, self)


def find_artifact(run: RunContext, previous: Mapping[str, StageResult], name: str) -> Path | None:
    for result in reversed(list(previous.values())):
        if name in result.artifacts:
            return run.run_dir.path / result.artifacts[name]
    return None


def stage_dataset(run: RunContext, previous: Mapping[str, StageResult], kind: str, split: str) -> Any:
    if kind not in DATA_KINDS:
        raise ConfigError(f"unknown data kind '{kind}'; the kinds are: {', '.join(DATA_KINDS)}")
    folder = find_artifact(run, previous, kind)
    if folder is not None:
        file = folder / f"{split}.jsonl"
        if not file.exists():
            return None
        import datasets

        from alignkit.core.records_io import read_jsonl

        rows = read_jsonl(file)
        return datasets.Dataset.from_list(rows) if rows else None
    return getattr(run.data, kind)(split)


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
    """The stages ``pipeline.skip`` leaves out: each entry names a stage or an optimizer
    (``pipeline.skip=[evaluate]`` leaves out every round's evaluate stage too)."""
    wanted = [str(item) for item in (cfg.pipeline.get("skip") or [])]
    known = {str(s.name) for s in plan} | {str(s.optimizer) for s in plan}
    unknown = [item for item in wanted if item not in known]
    if unknown:
        raise ConfigError(f"pipeline.skip names {', '.join(repr(u) for u in unknown)}, which pipeline "
                          f"'{cfg.pipeline.get('name')}' does not run; its stages: "
                          f"{', '.join(str(s.name) for s in plan)}")
    return {str(s.name) for s in plan if str(s.name) in wanted or str(s.optimizer) in wanted}


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


def optimizer_config(cfg: DictConfig, registry: Registry, stage: DictConfig) -> tuple[Any, DictConfig]:
    """A stage's optimizer entry and ``(validated options, its own trainer node or None)``: the
    ``optimizer`` node when the stage runs ``${optimizer.name}``, merged with the stage's ``config``."""
    name = str(stage.optimizer)
    entry = registry.get("optimizer", name)
    node: Any = OmegaConf.create({})
    if cfg.get("optimizer") is not None and cfg.optimizer.get("name") == name:
        node = cfg.optimizer
    if stage.get("config"):  # may add keys (a stage's own trainer.max_steps); the schemas check them below
        node = OmegaConf.merge(OmegaConf.create(OmegaConf.to_container(node, resolve=True)), stage.config)
    node = OmegaConf.to_container(node, resolve=True)
    trainer_override = node.pop("trainer", None) if isinstance(node, dict) else None
    return entry, (validate_config("optimizer", name, entry.config_schema, node), trainer_override)


_COMMAND_LINES: dict[int, tuple[Any, list[str]]] = {}


def remember_overrides(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """Record the command-line overrides ``cfg`` was composed with, for a caller that composes
    through Hydra's compose API (tests, benchmarks) rather than the ``alignkit`` app."""
    import weakref

    key = id(cfg)
    _COMMAND_LINES[key] = (weakref.ref(cfg), list(overrides))
    weakref.finalize(cfg, _COMMAND_LINES.pop, key, None)
    return cfg


def _command_line(cfg: DictConfig) -> list[str]:
    known = _COMMAND_LINES.get(id(cfg))
    if known is not None and known[0]() is cfg:
        return known[1]
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except (ImportError, ValueError):
        return []


def explicit_trainer(cfg: DictConfig) -> DictConfig:
    """The ``trainer.*`` keys the user set on the command line, with their composed values.

    Precedence is defaults < an optimizer file's (or pipeline stage's) own ``trainer:`` node <
    the command line, so ``alignkit pipeline=dpo trainer.max_steps=5`` means 5 steps even though
    the dpo pipeline sets its own.
    """
    explicit = OmegaConf.create({})
    for item in _command_line(cfg):
        key = item.split("=", 1)[0].lstrip("+")
        if key.startswith("trainer.") and "=" in item:
            value = OmegaConf.select(cfg, key, default=None)
            OmegaConf.update(explicit, key[len("trainer."):], value, force_add=True)
    return explicit


def _has_data(run: RunContext, previous: Mapping[str, StageResult], kind: str) -> bool:
    if kind not in DATA_KINDS:
        raise ConfigError(f"unknown data kind '{kind}' in a pipeline stage's 'requires'")
    return stage_dataset(run, previous, kind, "train") is not None


def run_pipeline(cfg: DictConfig, run_dir: str | Path, registry: Registry | None = None) -> RunDir:
    """Run every stage of ``cfg.pipeline``, skipping those already DONE.

    Lifecycle hooks fire around it; ``alignkit_after_run`` fires even when a stage fails.
    """
    registry = registry or Registry()
    registry.hook.alignkit_configure.call_historic(kwargs={"cfg": cfg})
    plan = stage_plan(cfg)
    # Resolve every name before any work: an unknown name fails fast with the list.
    registry.get("data_source", str(cfg.data.name))
    for stage in plan:
        registry.get("optimizer", str(stage.optimizer))
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
                if requires and not _has_data(run, previous, str(requires)):
                    if stage.get("optional", False):
                        rd.set_stage(name, "skipped")
                        log.info("stage %s skipped: no %s data configured", name, requires)
                        continue
                    raise ConfigError(
                        f"stage '{name}' of pipeline '{cfg.pipeline.name}' needs {requires} data, "
                        f"and data '{cfg.data.name}' provides none"
                    )
                entry, (opt_cfg, trainer_override) = optimizer_config(cfg, registry, stage)
                trainer = OmegaConf.merge(cfg.trainer, trainer_override or {}, explicit_trainer(cfg))
                ctx = StageContext(run=run, name=name, index=index, dir=rd.stage_dir(index, name),
                                   config=opt_cfg, trainer=trainer, policy=policy, previous=dict(previous))
                rd.set_stage(name, "running")
                run._stop = False
                started = time.time()
                optimizer = entry.factory(opt_cfg)
                if getattr(optimizer, "data_parallel", True):
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
        entry = run.registry.get("logger", str(name))
        options = node.get(str(name), {}) or {}
        cfg = validate_config("logger", entry.name, entry.config_schema, options)
        loggers.append(entry.factory(cfg, run.run_dir.path))
    return loggers
