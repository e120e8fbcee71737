"""Check a composed run before its first stage, so a typo the fourth stage would find does not
cost the three before it.

``preflight(cfg, registry)`` reads everything the stages will build, without building it or
loading a weight: every stage's optimizer options and trainer settings, the preference model,
feedback provider and generation backend the stages use, the user functions they name
(``package.module:function``) and the models they start from. It raises one ``ConfigError``
listing every problem, each with a did-you-mean or the list of choices, and otherwise returns
the ``Plan`` that ``alignkit ... --dry-run`` prints. ``run_pipeline`` calls it on every process.

It is never stricter than the stages: what a stage would only find out by running (its data,
a reward model an earlier stage trains) is left to the stage.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from omegaconf import DictConfig, OmegaConf

from alignkit.core import distributed
from alignkit.core.errors import ConfigError
from alignkit.core.stage_runs import stage_runs

if TYPE_CHECKING:
    from alignkit.core.registry import Registry

log = logging.getLogger("alignkit")

CONFIG_ROOT = "pkg://alignkit.conf"
INTERNAL_GROUPS = {"hydra": None, "accelerate": "launcher.config", "constitution": "feedback.constitution"}
"""Config folders that are not ``GROUP=OPTION`` choices: Hydra's own, and files that an option names
(``launcher.config=ddp``, ``feedback.constitution=default``)."""

GROUP_KIND = {"preference_model": "preference_model", "feedback": "feedback_provider", "generation": "generator",
              "data": "data_source", "critic": "feedback_provider"}
"""Config group -> registry kind of the component it builds (``critic``: the feedback provider that
critiques and revises in the critique_revise stage, apart from ``feedback``, the labeler)."""


@dataclass(frozen=True)
class Uses:
    """What a built-in optimizer's stage needs besides its own options."""

    components: tuple[str, ...] = ()  # config groups it builds: it fails without them
    trains: bool = True  # trainer.* apply to it
    policy: bool = True  # it leaves a new policy (a ``model`` artifact) for the stages after it


_SAMPLES_AND_SCORES = ("preference_model", "generation")
_SAMPLES_AND_JUDGES = ("feedback", "generation")
BUILTIN_USES: dict[str, Uses] = {
    "sft": Uses(), "dpo": Uses(), "cpo": Uses(), "orpo": Uses(),
    "ppo": Uses(_SAMPLES_AND_SCORES), "grpo": Uses(_SAMPLES_AND_SCORES), "rloo": Uses(_SAMPLES_AND_SCORES),
    "online_dpo": Uses(_SAMPLES_AND_SCORES), "dr_grpo": Uses(_SAMPLES_AND_SCORES), "dapo": Uses(_SAMPLES_AND_SCORES),
    "gspo": Uses(_SAMPLES_AND_SCORES), "reinforce_pp": Uses(_SAMPLES_AND_SCORES),
    "reward": Uses(policy=False),
    "best_of_n": Uses(_SAMPLES_AND_SCORES, trains=False, policy=False),
    "label": Uses(_SAMPLES_AND_JUDGES, trains=False, policy=False),
    "critique_revise": Uses(("critic", "generation"), trains=False, policy=False),
    # and the configured preference_model / feedback when its preference_model / win_rate options are on
    "evaluate": Uses(("generation",), trains=False, policy=False),
}
"""A plugin's optimizer is not in this table: the components that are configured are checked (it
may use them), none is required, and ``--dry-run`` cannot say whether it trains the policy."""

REQUIRED_OPTIONS = {("preference_model", "rule"): ("fn", "package.module:function")}
"""Options a built-in component cannot do without, though its schema lets them default to null."""

CALLABLE_OPTIONS = ("fn", "prompt_filter", "scorers")
"""Options that name user functions (``package.module:function``; ``scorers`` is a list of them)."""

MODEL_OPTIONS = {("preference_model", "bradley_terry"): ("path", "folder"),
                 ("preference_model", "judge"): ("model", "model"),
                 ("feedback", "constitution"): ("model", "model"), ("critic", "constitution"): ("model", "model")}
"""Options that name a model: a reward-model folder, or a local judge model (``backend=local``)."""


@dataclass
class PlannedStage:
    """One row of the plan: what the stage runs, reads, starts from and with which settings."""

    index: int
    name: str
    optimizer: str
    reads: str
    starts_from: str
    settings: dict[str, Any] = field(default_factory=dict)  # trainer settings, for stages that train
    changed: dict[str, Any] = field(default_factory=dict)  # optimizer options that differ from the defaults


@dataclass
class Plan:
    """What a run will do, as ``alignkit ... --dry-run`` prints it."""

    pipeline: str
    model: str
    data: str
    components: dict[str, str]
    stages: list[PlannedStage]
    warnings: list[str]

    def describe(self) -> str:
        lines = [f"pipeline {self.pipeline}: model {self.model}, data {self.data}"]
        lines += [f"  {group}: {value}" for group, value in self.components.items()]
        rows = [("#", "stage", "optimizer", "reads", "starts from", "settings")]
        for s in self.stages:
            settings = " ".join(f"{k}={_short(v)}" for k, v in {**s.settings, **s.changed}.items())
            rows.append((f"{s.index:02d}", s.name, s.optimizer, s.reads, s.starts_from, settings or "-"))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines += ["  ".join(v.ljust(widths[i]) for i, v in enumerate(row[:5])) + "  " + row[5] for row in rows]
        return "\n".join(lines)  # the warnings are logged by preflight()


def preflight(cfg: DictConfig, registry: Registry) -> Plan:
    """Validate everything the run's stages will build; one ``ConfigError`` lists every problem."""
    from alignkit.core.pipeline import stage_plan

    check = _Checker(cfg, registry)
    plan = stage_plan(cfg)
    check.stage_optimizers = {str(s.name): stage_runs(s) for s in plan}
    check.component("data", cfg.get("data"), required_by=None)
    stages = [check.stage(index, stage, plan[:index - 1]) for index, stage in enumerate(plan, start=1)]
    check.component("generation", cfg.get("generation") or OmegaConf.create({"name": "transformers"}),
                    required_by=None)
    for group in ("critic", "feedback", "preference_model"):  # feedback=reward_model uses the preference model
        if group in check.used or (check.unknown_optimizers and _configured(cfg.get(group))):
            check.component(group, cfg.get(group), required_by=check.used.get(group))
    model = str(cfg.model.get("name_or_path"))
    check.model(model, "model", revision=cfg.model.get("revision"))
    if check.problems:
        count = len(check.problems)
        raise ConfigError(f"the configuration has {count} problem{'s' if count > 1 else ''}, found before "
                          f"any stage ran:\n" + "\n".join(f"  - {p}" for p in check.problems))
    warnings = _ignored_overrides(cfg, plan, registry)
    for warning in warnings if distributed.is_main_process() else ():
        log.warning("alignkit: %s", warning)
    components = {group: _component_line(cfg.get(group)) for group in ("preference_model", "feedback", "critic",
                                                                        "generation")
                  if _configured(cfg.get(group))}
    return Plan(str(cfg.pipeline.get("name")), model, str(cfg.data.get("name")), components, stages, warnings)


class _Checker:
    """Collects problems instead of stopping at the first one."""

    def __init__(self, cfg: DictConfig, registry: Registry) -> None:
        self.cfg, self.registry = cfg, registry
        self.problems: list[str] = []
        self.used: dict[str, str | None] = {}  # group -> the first stage that needs it (None: may use it)
        self.unknown_optimizers = False
        self.references: set[str] = set()
        self.stage_optimizers: dict[str, str] = {}  # stage name -> its optimizer, every stage of the plan

    def attempt(self, fn: Callable[[], Any], context: str = "") -> Any:
        try:
            return fn()
        except ConfigError as exc:
            self.problems.append(f"{context}{exc}")
            return None

    # -- stages -------------------------------------------------------------------------
    def stage(self, index: int, stage: DictConfig, before: Sequence[DictConfig]) -> PlannedStage:
        from alignkit.core.engine import TrainerConfig
        from alignkit.core.pipeline import optimizer_config, validate_config

        name, optimizer = str(stage.name), stage_runs(stage)
        key = _settings_key(self.cfg, stage)
        context = f"stage '{name}' ({key}.*): "
        uses = BUILTIN_USES.get(optimizer)
        self.unknown_optimizers |= uses is None
        row = PlannedStage(index, name, optimizer, _reads(stage), _starts_from(self.cfg, before))
        if stage.get("data") is not None:
            self.stage_data(name, stage.get("data"))
        found = self.attempt(lambda: optimizer_config(self.cfg, self.registry, stage), context)
        if found is None:
            return row
        entry, (options, layered) = found  # layered: pipeline.stage_trainer's precedence
        trainer = self.attempt(lambda: validate_config("trainer", "trainer", TrainerConfig, layered), context)
        if trainer is not None and (uses is None or uses.trains):
            row.settings = {"max_steps": trainer.max_steps, "lr": trainer.learning_rate,
                            "batch_size": trainer.batch_size}
        row.changed = _changed_options(entry.config_schema, options)
        self.callables(options, key)
        check = getattr(entry.factory, "preflight", None)  # e.g. RL: the parts its options name exist and fit
        if check is not None:
            self.attempt(lambda: check(options, self.registry), context)
        for group in uses.components if uses is not None else ():
            self.need(group, name)
        if optimizer == "evaluate":
            self.evaluate(name, options, before)
        return row

    def stage_data(self, name: str, own: Any) -> None:
        """A stage's own ``data:`` options (``{preferences: harmless}``), checked as the data source
        they build over the run's (core/pipeline.py ``RunContext.data_for``)."""
        if not isinstance(own, DictConfig):
            self.problems.append(f"stage '{name}': data must be a mapping of data options, e.g. "
                                 f"{{preferences: pairs.jsonl}}, not {own!r}")
            return
        run_node = OmegaConf.to_container(self.cfg.data, resolve=True)
        mine = OmegaConf.to_container(own, resolve=True)
        node = mine if mine.get("name", run_node.get("name")) != run_node.get("name") else {**run_node, **mine}
        self.component("data", OmegaConf.create(node), required_by=name, key=f"stage '{name}' data")

    def evaluate(self, name: str, options: DictConfig, before: Sequence[DictConfig]) -> None:
        """The evaluate stage scores with a configured preference model and judges with a configured
        feedback provider (``evaluate.preference_model`` / ``evaluate.win_rate``) and compares with
        ``evaluate.reference``."""
        if options.get("preference_model", True) and _configured(self.cfg.get("preference_model")):
            self.used.setdefault("preference_model", name)
        if options.get("win_rate", True) and _configured(self.cfg.get("feedback")):
            self.used.setdefault("feedback", name)
        reference = str(options.get("reference") or "auto")
        if reference in self.references:  # every round's evaluate stage: reported once
            return
        self.references.add(reference)
        if reference.startswith("stage:"):
            from alignkit.core.pipeline import did_you_mean

            earlier, wanted = [str(s.name) for s in before], reference[len("stage:"):]
            if wanted not in earlier:
                self.problems.append(f"stage '{name}': evaluate.reference={reference}: no earlier stage is named "
                                     f"'{wanted}'{did_you_mean([wanted], earlier)}; "
                                     f"the earlier stages are: {', '.join(earlier) or 'none'}")
        elif reference not in ("auto", "start"):
            self.model(reference, "evaluate.reference")

    def need(self, group: str, stage: str | None, who: str | None = None) -> None:
        if group in self.used and self.used[group] is not None:
            return
        self.used[group] = stage
        if group != "generation" and not _configured(self.cfg.get(group)):
            self.problems.append(f"{who or f'stage {stage!r}'} needs a {group}: add {group}=<one of "
                                 f"{', '.join(self.choices(group))}> to the command line")

    def choices(self, group: str) -> list[str]:
        # a critic is a feedback provider that can also critique and revise: its conf/critic/ options
        registered = set(self.registry.components(GROUP_KIND[group])) if group in GROUP_KIND and group != "critic" \
            else set()
        return sorted(registered | set(group_options(group, self.registry.config_searchpath())))

    # -- components ---------------------------------------------------------------------
    def component(self, group: str, node: Any, required_by: str | None, key: str | None = None) -> None:
        """Validate a configured ``group`` node as the stage that builds it would, without building it
        (``key``: where it sits, for a member of ``preference_model=composite``)."""
        from alignkit.core.pipeline import validate_config

        if not _configured(node):
            return
        key = key or group
        context = f"{key}: " if key != group else ""
        entry = self.attempt(lambda: self.registry.get(GROUP_KIND[group], str(node.get("name"))), context)
        if entry is None:
            return
        options = self.attempt(lambda: validate_config(group if group != "data" else "data source", entry.name,
                                                       entry.config_schema, node), context)
        if options is None:
            return
        required = REQUIRED_OPTIONS.get((group, entry.name))
        if required and not options.get(required[0]):
            by = f" (stage '{required_by}' uses it)" if required_by else ""
            self.problems.append(f"{key}={entry.name} needs {key}.{required[0]}={required[1]}{by}")
        self.callables(options, key)
        if group == "data" and hasattr(options.get("task"), "get"):  # data=files: task.verifier, task.scorers
            self.callables({"prompt_filter": options.task.get("verifier"), "scorers": options.task.get("scorers")},
                           f"{key}.task", names={"prompt_filter": "verifier"})
        model_option = MODEL_OPTIONS.get((group, entry.name))
        if model_option is not None:
            self.model_option(key, options, *model_option)
        if (group, entry.name) == ("preference_model", "bradley_terry") and options.get("stage"):  # its reward stage
            self.reads_stage(key, str(options.get("stage")), "reward")
        if group == "feedback" and entry.name == "reward_model":  # it scores with the preference model
            by = f" (stage '{required_by}' uses it)" if required_by else ""
            self.need("preference_model", required_by, who=f"feedback=reward_model{by}")
        members = options.get("members") if group == "preference_model" else None
        if isinstance(members, DictConfig):  # preference_model=composite: each member is a preference model node
            for member, member_node in members.items():
                if isinstance(member_node, DictConfig):
                    self.component(group, member_node, required_by, key=f"{key}.members.{member}")

    def reads_stage(self, key: str, stage: str, optimizer: str) -> None:
        from alignkit.core.pipeline import did_you_mean

        stages = self.stage_optimizers
        producers = [s for s, o in stages.items() if o == optimizer]
        if stages.get(stage) != optimizer:
            what = f"stage '{stage}' runs optimizer '{stages[stage]}'" if stage in stages else \
                f"no stage is named '{stage}'{did_you_mean([stage], producers)}"
            self.problems.append(f"{key}.stage={stage}: {what}; the stages that run optimizer '{optimizer}': "
                                 f"{', '.join(producers) or 'none'}")

    def callables(self, options: Any, key: str, names: dict[str, str] | None = None) -> None:
        """Import every function an option names; ``task`` (what the data declares, core/task.py)
        is the data source's to name."""
        from alignkit.core.callables import load_callable
        from alignkit.core.task import TASK

        for option in CALLABLE_OPTIONS:
            value = options.get(option) if hasattr(options, "get") else None
            if not value:
                continue
            specs = [value] if isinstance(value, str) else list(value)
            what = f"{key}.{(names or {}).get(option, option)}" + (" entry" if option == "scorers" else "")
            for spec in specs:
                if str(spec) != TASK:
                    self.attempt(lambda spec=spec, what=what: load_callable(str(spec), what=what))

    def model_option(self, group: str, options: Any, option: str, kind: str) -> None:
        value = options.get(option)
        if not value:
            return
        if kind == "folder":
            if not Path(str(value)).expanduser().exists():
                self.problems.append(f"{group}.{option}={value}: no such folder")
        elif str(options.get("backend", "local")) == "local":
            self.model(str(value), f"{group}.{option}")

    def model(self, name: str, what: str, revision: Any = None) -> None:
        problem = model_reference_problem(self.registry, name, revision)
        if problem is not None:
            self.problems.append(f"{what}={name}: {problem}")


# -- models ---------------------------------------------------------------------------------


def model_reference_problem(registry: Registry, name: str, revision: Any = None) -> str | None:
    """Why the built-in loader could not load ``name`` (None when it could, as far as can be told
    without loading it): a missing folder or GGUF file, a folder without ``config.json``, a hub id
    absent from the local cache while ``HF_HUB_OFFLINE`` is set. A hub id is otherwise left to the
    stage. When another plugin implements ``alignkit_load_model`` it may answer any name: no check."""
    import os

    loaders = {impl.plugin_name for impl in registry.pm.hook.alignkit_load_model.get_hookimpls()}
    if loaders != {"models"}:
        return None
    from alignkit.plugins.models import resolve

    name = name.strip()
    if not name:
        return "the name is empty"
    path = Path(name).expanduser()
    if name.lower() in resolve.ALIASES or (name.lower() == resolve.SMOLLM2_HUB_ID.lower() and not revision):
        return None
    if name.lower().endswith(".gguf"):
        return None if path.is_file() else "no such GGUF file"
    if path.is_dir():
        if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
            return None
        return "the folder holds no config.json (nor a PEFT adapter_config.json); expected a save_pretrained folder"
    if path.exists():
        return "it is a file; expected an alias, a folder, a .gguf file or a hub id"
    from alignkit.core.pipeline import did_you_mean

    hint = did_you_mean([name.lower()], [*resolve.ALIASES, *model_options()])
    if resolve._HUB_ID.match(name) and not name.startswith("."):
        if not resolve.hub_offline() or _in_hub_cache(name, revision):
            return None
        return (f"HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache{hint}; use a folder, "
                f"a .gguf file or an alias ({', '.join(resolve.ALIASES)})")
    if name.startswith(("/", ".", "~")) or os.sep in name or "\\" in name:
        return "no such folder"
    return f"not an alias, a folder, a .gguf file or a hub id{hint}"


def _in_hub_cache(repo_id: str, revision: Any) -> bool:
    from huggingface_hub import try_to_load_from_cache

    for filename in ("config.json", "adapter_config.json"):
        found = try_to_load_from_cache(repo_id, filename, revision=str(revision) if revision else None)
        if isinstance(found, str):
            return True
    return False


def model_options() -> list[str]:
    """The ``model=`` options of conf/model/ that name a model (``path`` is the form for any other)."""
    return [o for o in group_options("model", ()) if o != "path"]


# -- config groups ----------------------------------------------------------------------------


def _root_folder(root: str) -> Any:
    """The folder behind a Hydra search path entry (``pkg://module`` or ``file://dir`` or a dir)."""
    if root.startswith("pkg://"):
        from importlib.resources import files

        try:
            return files(root[len("pkg://"):].replace("/", "."))
        except (ModuleNotFoundError, TypeError):
            return None
    return Path(root[len("file://"):] if root.startswith("file://") else root)


def config_groups(searchpath: Sequence[str]) -> dict[str, list[str]]:
    """Every config group of alignkit's conf/ and the plugin roots on ``searchpath``, with its options
    (the ``.yaml`` file names), as Hydra would find them."""
    groups: dict[str, set[str]] = {}
    for root in (CONFIG_ROOT, *searchpath):
        folder = _root_folder(root)
        if folder is None or not folder.is_dir():
            continue
        for sub in folder.iterdir():
            if sub.is_dir() and not sub.name.startswith(("_", ".")):
                options = {p.name[:-5] for p in sub.iterdir() if p.name.endswith(".yaml")}
                if options:
                    groups.setdefault(sub.name, set()).update(options)
    return {group: sorted(options) for group, options in sorted(groups.items())}


def group_options(group: str, searchpath: Sequence[str]) -> list[str]:
    return config_groups(searchpath).get(group, [])


# -- helpers ----------------------------------------------------------------------------------


def _configured(node: Any) -> bool:
    return node is not None and node.get("name") is not None


def _settings_key(cfg: DictConfig, stage: DictConfig) -> str:
    """Where the user sets this stage's options: ``optimizer`` for the stage that runs
    ``${optimizer.name}``, else the top-level node its ``config`` comes from (``label``, ``evaluate``)."""
    optimizer = stage_runs(stage)
    if stage.get("optimizer") is not None and cfg.get("optimizer") is not None and cfg.optimizer.get("name") == optimizer:
        return "optimizer"
    text = OmegaConf.to_container(stage, resolve=False).get("config")  # "${label}" unless a round resolved it
    if isinstance(text, str) and text.startswith("${") and text.endswith("}"):
        return text[2:-1]
    for key in cfg:
        node = cfg.get(key)
        if key not in ("optimizer", "pipeline") and isinstance(node, DictConfig) and node.get("name") == optimizer:
            return str(key)
    return f"pipeline.stages[{stage.name}].config"


def _reads(stage: DictConfig) -> str:
    requires = stage.get("requires")
    if not requires:
        return "-"
    own = stage.get("data")  # the stage's own data options: `preferences (preferences=harmless)`
    mine = f" ({', '.join(f'{k}={_short(v)}' for k, v in own.items())})" if isinstance(own, DictConfig) else ""
    return f"{requires}{mine} (optional)" if stage.get("optional", False) else f"{requires}{mine}"


def _starts_from(cfg: DictConfig, before: Sequence[DictConfig]) -> str:
    """The policy a stage starts from: the last model an earlier stage trains, else ``model=``
    (an optional stage runs only when its data is there: either)."""
    for position in range(len(before) - 1, -1, -1):
        stage = before[position]
        uses = BUILTIN_USES.get(stage_runs(stage))
        if uses is None:
            return "the last model before it"
        if uses.policy:
            if stage.get("optional", False):
                return f"{stage.name}'s model or {_starts_from(cfg, before[:position])}"
            return f"{stage.name}'s model"
    return f"model={cfg.model.get('name_or_path')}"


def _changed_options(schema: type | None, options: DictConfig) -> dict[str, Any]:
    if schema is None or not dataclasses.is_dataclass(schema):
        return {}
    defaults = OmegaConf.to_container(OmegaConf.structured(schema), resolve=True)
    values = OmegaConf.to_container(options, resolve=True)
    return {k: v for k, v in values.items() if k != "name" and k in defaults and defaults[k] != v}


def _short(value: Any, limit: int = 40) -> str:
    """A setting as one short word: ``demo:verifiable`` for ``alignkit.plugins.rules.demo:verifiable``."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_short(v, limit) for v in value) + "]"
    text = str(value)
    if ":" in text and "/" not in text and " " not in text:  # package.module:function
        module, _, fn = text.partition(":")
        text = f"{module.rpartition('.')[2]}:{fn}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _component_line(node: Any) -> str:
    options = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k != "name"}
    return str(node.get("name")) + "".join(f" {k}={_short(v)}" for k, v in options.items()
                                           if k in (*CALLABLE_OPTIONS, "path", "model", "backend") and v)


def _ignored_overrides(cfg: DictConfig, plan: Sequence[DictConfig], registry: Registry) -> list[str]:
    """Command-line settings of an optimizer no stage runs (``evaluate.num_prompts=4`` with a pipeline
    that has no evaluate stage): they would change nothing, silently."""
    from alignkit.core.pipeline import _command_line

    run = {stage_runs(stage) for stage in plan}
    optimizers = set(registry.components("optimizer")) | set(registry.components("stage"))
    out: list[str] = []
    for item in _command_line(cfg):
        key = item.split("=", 1)[0].lstrip("+~")
        top = key.split(".", 1)[0]
        node = cfg.get(top) if "." in key and top in cfg else None
        if not isinstance(node, DictConfig) or top in ("pipeline", "trainer"):
            continue
        name = node.get("name")
        if name in optimizers and name not in run:
            out.append(f"{item}: pipeline '{cfg.pipeline.get('name')}' has no stage that runs "
                       f"'{name}', so this setting changes nothing")
    return out
