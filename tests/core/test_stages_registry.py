"""Training algorithms and the stages that sample, label or evaluate live in two registries
(``alignkit_optimizers``, ``alignkit_stages``); a pipeline stage names one with ``optimizer:`` or
``stage:``, and what pipelines and plugins of hooks 1.1 wrote keeps running."""

import io
import re
from importlib.resources import files

import pytest
from omegaconf import OmegaConf

from alignkit.core import ConfigError, OptimizerEntry, StageEntry, StageResult, hookimpl, hookspecs
from alignkit.core.cli import list_plugins
from alignkit.core.manager import get_plugin_manager
from alignkit.core.pipeline import run_pipeline, skipped_stages, stage_plan
from alignkit.core.registry import Registry
from alignkit.core.stage_runs import stage_component
from alignkit.core.testing import compose

BUILTIN_STAGES = {"label", "evaluate", "best_of_n", "critique_revise"}


class Counting:
    """A stage that trains nothing and records that it ran."""

    def __init__(self, options, ctx):
        self.options = options

    def run(self, ctx):
        (ctx.dir / "ran").write_text(ctx.name)
        return StageResult({"counted": 1.0})


class NewStagePlugin:
    """A plugin of hooks 1.2: its stage comes through alignkit_stages."""

    @hookimpl
    def alignkit_stages(self):
        yield StageEntry(name="counting", factory=Counting, description="counts, trains nothing")


class OldStagePlugin:
    """A plugin of hooks 1.1: a stage that trains nothing, offered as an optimizer."""

    alignkit_requires = ">=1.1,<2"

    @hookimpl
    def alignkit_optimizers(self):
        yield OptimizerEntry(name="old_counting", factory=Counting, description="counts, trains nothing")


def registry_with(*plugins):
    pm = get_plugin_manager()
    for plugin in plugins:
        pm.register(plugin, name=type(plugin).__name__)
    return Registry(pm)


def pipeline(*stages):
    cfg = compose(["logger=none"])
    cfg.pipeline.stages = OmegaConf.create(list(stages))
    return cfg


# -- the registries -----------------------------------------------------------------------------


def test_the_builtin_stages_are_in_the_stage_registry_and_the_algorithms_are_not():
    reg = Registry()
    stages, optimizers = reg.components("stage"), reg.components("optimizer")
    assert BUILTIN_STAGES <= set(stages)
    assert not BUILTIN_STAGES & set(optimizers), "a stage that trains nothing is not a training algorithm"
    assert {"sft", "dpo", "ppo", "grpo", "reward"} <= set(optimizers) and not {"sft", "dpo"} & set(stages)
    assert all(stages[name].package == "alignkit" and isinstance(stages[name].entry, StageEntry)
               for name in BUILTIN_STAGES)
    assert {stages[name].plugin_name for name in BUILTIN_STAGES} == {"evaluation", "feedback", "rejection_sampling"}


def test_a_plugins_stage_reaches_the_stage_registry_and_a_clash_names_both():
    assert registry_with(NewStagePlugin()).components("stage")["counting"].plugin_name == "NewStagePlugin"

    class Clash:
        @hookimpl
        def alignkit_stages(self):
            yield StageEntry(name="evaluate", factory=Counting)

    from alignkit.core import PluginError

    with pytest.raises(PluginError, match=r"stage 'evaluate' is registered twice: by plugin 'evaluation'.*'Clash'"):
        registry_with(Clash()).components("stage")


def test_the_new_hook_raised_the_minor_version_and_plugins_of_1_1_still_load():
    assert hookspecs.ALIGNKIT_HOOKS_VERSION == "1.2"
    reg = registry_with(OldStagePlugin())  # alignkit_requires = ">=1.1,<2"
    assert "old_counting" in reg.components("optimizer")


# -- pipelines: `stage:` and `optimizer:` -------------------------------------------------------


def test_a_stage_entry_runs_a_stage(tmp_path):
    rd = run_pipeline(pipeline({"name": "count", "stage": "counting"}), tmp_path / "run", registry_with(NewStagePlugin()))
    assert (tmp_path / "run" / "01-count" / "ran").read_text() == "count"
    assert rd.summary["stages"]["count"]["metrics"]["counted"] == 1.0


def test_optimizer_naming_a_stage_is_the_alias_of_old_pipelines_and_says_to_write_stage(tmp_path, caplog):
    with pytest.warns(DeprecationWarning, match=r"write `stage: counting` instead of `optimizer: counting`"), \
            caplog.at_level("INFO", logger="alignkit"):
        run_pipeline(pipeline({"name": "count", "optimizer": "counting"}), tmp_path / "run",
                     registry_with(NewStagePlugin()))
    assert (tmp_path / "run" / "01-count" / "ran").exists()
    assert "write `stage: counting`" in caplog.text  # seen without -W: Python hides DeprecationWarning


def test_an_old_pipeline_yaml_with_optimizer_evaluate_resolves_in_the_stage_registry():
    reg = Registry()
    old = OmegaConf.create({"name": "evaluate", "optimizer": "evaluate", "config": {}})
    with pytest.warns(DeprecationWarning, match="write `stage: evaluate`"):
        found = stage_component(reg, old, warn=True)
    assert (found.kind, found.key, found.name) == ("stage", "optimizer", "evaluate")
    assert isinstance(found.entry, StageEntry)


def test_a_stage_a_1_1_plugin_offers_as_an_optimizer_still_runs_without_a_warning(tmp_path, recwarn):
    run_pipeline(pipeline({"name": "count", "optimizer": "old_counting"}), tmp_path / "run",
                 registry_with(OldStagePlugin()))
    assert (tmp_path / "run" / "01-count" / "ran").exists()
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning) and "stage:" in str(w.message)]


def test_stage_naming_a_training_algorithm_says_to_write_optimizer():
    with pytest.raises(ConfigError, match=r"says `stage: dpo`, but 'dpo' is a training algorithm .*"
                                          r"write `optimizer: dpo`"):
        stage_component(Registry(), OmegaConf.create({"name": "x", "stage": "dpo"}))


@pytest.mark.parametrize(("stage", "suggestion"), [
    ({"name": "e", "optimizer": "evalute"}, "Did you mean 'evaluate' (`stage: evaluate`)?"),
    ({"name": "e", "stage": "dpoo"}, "Did you mean 'dpo' (`optimizer: dpo`)?"),
])
def test_an_unknown_name_gets_did_you_mean_over_both_registries(tmp_path, stage, suggestion):
    with pytest.raises(ConfigError) as info:
        run_pipeline(pipeline(stage), tmp_path / "run", Registry())
    message = str(info.value)
    assert suggestion in message
    algorithms = re.search(r"Training algorithms \(a pipeline stage says `optimizer: NAME`\): ([^.]*)\.", message)
    stages = re.search(r"Stages that sample, label or evaluate \(a pipeline stage says `stage: NAME`\): ([^.]*)\.",
                       message)
    assert algorithms and {"sft", "dpo"} <= set(algorithms.group(1).split(", "))
    assert stages and BUILTIN_STAGES <= set(stages.group(1).split(", "))
    assert not (tmp_path / "run").exists(), "fails before any work"


@pytest.mark.parametrize("stage", [{"name": "x", "optimizer": "sft", "stage": "evaluate"}, {"name": "x"}])
def test_a_stage_entry_names_exactly_one_of_optimizer_and_stage(stage):
    with pytest.raises(ConfigError, match=r"pipeline stage 'x' (sets both|names nothing to run)"):
        stage_component(Registry(), OmegaConf.create(stage))


@pytest.mark.parametrize("key", ["stage", "optimizer"])  # optimizer: a pipeline of hooks 1.1
def test_pipeline_skip_names_a_stage_by_what_it_runs(key):
    cfg = pipeline({"name": "sft", "optimizer": "sft"}, {"name": "check", key: "evaluate"})
    cfg.pipeline.skip = ["evaluate"]
    assert skipped_stages(cfg, stage_plan(cfg)) == {"check"}
    cfg = compose(["pipeline=rejection_sampling", "pipeline.skip=[evaluate]"])
    assert skipped_stages(cfg, stage_plan(cfg)) == {"evaluate_1", "evaluate_2"}


def test_the_shipped_pipelines_name_stages_with_stage():
    for path in files("alignkit.conf").joinpath("pipeline").iterdir():
        text = path.read_text() if path.name.endswith(".yaml") else ""
        old = re.findall(r"optimizer: *(label|evaluate|best_of_n|critique_revise)\b", text)
        assert not old, f"conf/pipeline/{path.name}: write `stage: {old[0]}`"
    assert "stage: evaluate" in files("alignkit.conf").joinpath("pipeline", "dpo.yaml").read_text()


# -- alignkit plugins ---------------------------------------------------------------------------


def test_alignkit_plugins_lists_the_two_registries_under_their_own_headings():
    out = io.StringIO()
    list_plugins(registry_with(NewStagePlugin()), out=out)
    sections: dict[str, list[list[str]]] = {}
    heading = None
    for line in out.getvalue().splitlines():
        if line.startswith("# "):
            heading = line[2:]
            sections[heading] = []
        elif line.strip() and heading is not None:
            sections[heading].append(line.split()[:3])
    algorithms = sections["training algorithms (a pipeline stage says `optimizer: NAME`)"]
    stages = sections["stages that sample, label or evaluate (a pipeline stage says `stage: NAME`)"]
    assert ["optimizer", "dpo", "alignkit"] in algorithms and all(row[0] == "optimizer" for row in algorithms)
    assert ["stage", "evaluate", "alignkit"] in stages and ["stage", "counting", "unknown"] in stages
    assert all(row[0] == "stage" for row in stages)
    assert not {row[1] for row in algorithms} & BUILTIN_STAGES
