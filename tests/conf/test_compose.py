"""Every shipped config option composes, and every option names a registered component."""

from importlib.resources import files

import pytest

from alignkit.core.testing import compose

CONF = files("alignkit.conf")
REGISTRY_GROUPS = {"optimizer": ("optimizer", "stage"), "data": ("data_source",), "generation": ("generator",)}
"""Config group -> the registry kinds its files name (conf/optimizer holds algorithms' and stages' options)."""


def options(group):
    return sorted(p.name[:-5] for p in CONF.joinpath(group).iterdir() if p.name.endswith(".yaml"))


def all_options():
    for group in ("pipeline", "model", "data", "optimizer", "logger", "generation"):
        for option in options(group):
            yield group, option


@pytest.mark.parametrize(("group", "option"), list(all_options()))
def test_option_composes(group, option):
    extra = ["model.name_or_path=/some/dir"] if (group, option) == ("model", "path") else []
    cfg = compose([f"{group}={option}", *extra])
    assert cfg.pipeline.stages, "every composition has a pipeline with stages"
    assert cfg.trainer.max_steps > 0


@pytest.mark.parametrize(("group", "kinds"), list(REGISTRY_GROUPS.items()))
def test_group_file_name_is_the_registry_name(group, kinds, registry):
    registered = {name for kind in kinds for name in registry.components(kind)}
    for option in options(group):
        cfg = compose([f"{group}={option}"])
        assert cfg[group].name == option, f"conf/{group}/{option}.yaml must say name: {option}"
        assert option in registered, f"conf/{group}/{option}.yaml has no registered {' or '.join(kinds)}"


def test_every_pipeline_stage_names_a_registered_algorithm_or_stage_under_its_own_key(registry):
    import warnings

    from alignkit.core.stage_runs import stage_component

    for option in options("pipeline"):
        cfg = compose([f"pipeline={option}"])
        for stage in cfg.pipeline.stages:
            with warnings.catch_warnings():
                warnings.simplefilter("error", DeprecationWarning)  # a shipped pipeline uses no alias
                found = stage_component(registry, stage, warn=True)
            assert found.kind == found.key, f"pipeline/{option}.yaml: stage {stage.name}"


def test_pipeline_picks_its_optimizer_and_the_command_line_wins():
    assert compose(["pipeline=dpo"]).optimizer.name == "dpo"
    assert compose(["pipeline=sft"]).optimizer.name == "sft"
    cfg = compose(["pipeline=dpo", "optimizer.loss_type=ipo", "optimizer.beta=0.5"])
    assert (cfg.optimizer.loss_type, cfg.optimizer.beta) == ("ipo", 0.5)


def test_arbitrary_model_specs_become_the_path_option():
    cfg = compose(["model=HuggingFaceTB/SmolLM2-360M-Instruct"])
    assert cfg.model.name_or_path == "HuggingFaceTB/SmolLM2-360M-Instruct"
    cfg = compose(["model=/tmp/some/model.gguf"])
    assert cfg.model.name_or_path == "/tmp/some/model.gguf"
    assert compose(["model=tiny-random"]).model.name_or_path == "tiny-random"


def test_trainer_defaults_match_the_engine_schema():
    import dataclasses

    from alignkit.core.engine import TrainerConfig

    cfg = compose([])
    fields = {f.name: f.default for f in dataclasses.fields(TrainerConfig)}
    assert dict(cfg.trainer) == fields  # the values, not only the keys (tests/conf/test_defaults.py)


def test_every_yaml_says_how_to_run_it():
    for group in ("pipeline", "model", "data", "optimizer", "logger", "generation"):
        for option in options(group):
            text = CONF.joinpath(group, f"{option}.yaml").read_text()
            assert "Run:" in text.split("\n\n")[0] or "Run:" in text[:400], f"{group}/{option}.yaml"
