"""Curation components take the run's registry from the context they are built with and never
build a registry of their own: a plugin known to the run (and only to it) serves their nested
sources, and a teacher or scorer asked for without one is an error, not a second plugin load."""

from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from alignkit.core import ConfigError, DataSourceEntry, hookimpl
from alignkit.core.manager import get_plugin_manager
from alignkit.core.pipeline import RunContext
from alignkit.core.registry import Registry
from alignkit.core.rundir import RunDir


class OnlyHere:
    """A data source only the run's registry knows (a plugin registered on this one manager)."""

    def sft(self, split):
        import datasets

        if split != "train":
            return None
        return datasets.Dataset.from_list([{"messages": [{"role": "user", "content": f"q{i}"},
                                                         {"role": "assistant", "content": f"a{i}"}]}
                                           for i in range(3)])

    def preferences(self, split):
        return None

    def prompts(self, split):
        return None


class OnlyHerePlugin:
    @hookimpl
    def alignkit_data_sources(self):
        yield DataSourceEntry(name="only_here", factory=lambda options, ctx: OnlyHere())


def test_a_mixture_built_by_the_run_builds_its_sources_through_the_runs_registry(tmp_path):
    pm = get_plugin_manager()
    pm.register(OnlyHerePlugin(), name="only-here")
    cfg = OmegaConf.create({"data": {"name": "mixture", "sources": {"a": {"data": {"name": "only_here"}}}}})
    run = RunContext(cfg, Registry(pm), RunDir(tmp_path / "run"))
    # no alignkit_before_run (as in `alignkit evaluate RUN_DIR`): the factory's ctx alone must do
    rows = run.data.sft("train")
    assert sorted(r["messages"][0]["content"] for r in rows) == ["q0", "q1", "q2"]


def test_a_teacher_is_never_loaded_through_a_registry_of_its_own():
    from alignkit.plugins.curation.teacher import TeacherConfig, build_teacher

    with pytest.raises(ConfigError, match="loaded through the run's plugins"):
        build_teacher(TeacherConfig(model="tiny-random"), None)


def test_a_quality_scorer_is_never_built_through_a_registry_of_its_own():
    from alignkit.plugins.curation.quality import QualityConfig, build_scorer

    with pytest.raises(ConfigError, match="built through the run's plugins"):
        build_scorer(QualityConfig(preference_model={"name": "rule", "fn": "x:y"}), None)
    assert build_scorer(QualityConfig(), None) is None, "no scorer asked for: nothing to build"


def test_a_scorer_uses_the_registry_it_is_given():
    from alignkit.plugins.curation.quality import QualityConfig, build_scorer

    asked = []
    registry = SimpleNamespace(components=lambda kind: asked.append(kind) or {},
                               get=lambda kind, name: (_ for _ in ()).throw(ConfigError(f"unknown {kind} '{name}'")))
    with pytest.raises(ConfigError, match="unknown preference_model 'nowhere'"):
        build_scorer(QualityConfig(preference_model={"name": "nowhere"}), registry)
    assert asked == ["preference_model"]
