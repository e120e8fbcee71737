"""Preflight: a problem that a later stage would find fails the run before the first stage trains,
with every problem listed, a did-you-mean or the list of choices; valid configs pass untouched."""

import dataclasses
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from alignkit.core import ConfigError, OptimizerEntry, StageResult, hookimpl
from alignkit.core.pipeline import run_pipeline, stage_plan, validate_config
from alignkit.core.preflight import config_groups, preflight
from alignkit.core.testing import FAST_OVERRIDES, compose

ROOT = Path(__file__).parents[2]
FAKE = ROOT / "tests" / "fixtures" / "fake_plugin"
RULE = ("preference_model=rule", "preference_model.fn=alignkit.plugins.rules.demo:arithmetic_correct")


def fails_before_anything_trains(registry, run_dir, *overrides):
    cfg = compose([*FAST_OVERRIDES, *overrides], registry)
    with pytest.raises(ConfigError) as info:
        run_pipeline(cfg, run_dir, registry)
    assert not (run_dir / "01-sft").exists(), "SFT ran before the problem was found"
    assert not (run_dir / "summary.json").exists()
    return str(info.value)


def test_a_misspelled_option_of_a_later_stage_fails_before_sft_with_did_you_mean(registry, tmp_path):
    # after Hydra's hint "To append to your config use +optimizer.betaa=0.1"
    message = fails_before_anything_trains(registry, tmp_path / "run", "pipeline=dpo", "+optimizer.betaa=0.1")
    assert "stage 'dpo' (optimizer.*): optimizer 'dpo' has no option 'betaa' (did you mean 'beta'?)" in message


def test_a_missing_preference_model_fails_before_sft_with_the_choices(registry, tmp_path):
    message = fails_before_anything_trains(registry, tmp_path / "run", "pipeline=ppo")
    choices = sorted(registry.components("preference_model"))  # every registered one has a conf/ file
    assert {"bradley_terry", "judge", "rule"} <= set(choices)
    assert (f"stage 'ppo' needs a preference_model: add preference_model=<one of {', '.join(choices)}> "
            "to the command line") in message


def test_a_function_that_does_not_import_fails_before_sft(registry, tmp_path):
    message = fails_before_anything_trains(registry, tmp_path / "run", "pipeline=preference", "feedback.fn=pkg.mod:fn",
                                           "evaluate.scorers=[alignkit.plugins.rules.demo:no_such_rule]")
    assert "feedback.fn 'pkg.mod:fn': cannot import module 'pkg.mod'" in message
    assert ("evaluate.scorers entry 'alignkit.plugins.rules.demo:no_such_rule': module "
            "'alignkit.plugins.rules.demo' has no attribute 'no_such_rule'") in message


def test_a_model_that_is_not_there_fails_before_sft_and_all_problems_are_listed(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fast = [o for o in FAST_OVERRIDES if not o.startswith("model=")]
    cfg = compose([*fast, "pipeline=dpo", "model=tiny-randm", "evaluate.reference=does-not-exist",
                   "+optimizer.betaa=0.1", "preference_model=bradley_terry",
                   f"preference_model.path={tmp_path / 'no-rm'}"], registry)
    with pytest.raises(ConfigError) as info:
        run_pipeline(cfg, tmp_path / "run", registry)
    message = str(info.value)
    assert message.startswith("the configuration has 4 problems, found before any stage ran:\n  - ")
    assert "model=tiny-randm: HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache " \
           "(did you mean 'tiny-random'?)" in message
    assert "evaluate.reference=does-not-exist: HF_HUB_OFFLINE is set" in message
    assert "has no option 'betaa' (did you mean 'beta'?)" in message
    assert f"preference_model.path={tmp_path / 'no-rm'}: no such folder" in message
    assert not (tmp_path / "run").exists()


def test_a_hub_id_in_the_local_cache_passes_offline(registry, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--acme--tiny-chat"  # the layout huggingface_hub writes
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
    cfg = compose(["pipeline=sft", "evaluate.reference=acme/tiny-chat"], registry)
    preflight(cfg, registry)
    cfg = compose(["pipeline=sft", "evaluate.reference=acme/other-chat"], registry)
    with pytest.raises(ConfigError, match="evaluate.reference=acme/other-chat: HF_HUB_OFFLINE is set"):
        preflight(cfg, registry)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # online: a hub id is left to the stage that loads it
    preflight(cfg, registry)


def test_a_model_folder_without_config_is_reported(registry, tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = compose(["pipeline=sft", f"evaluate.reference={tmp_path / 'empty'}"], registry)
    with pytest.raises(ConfigError, match="the folder holds no config.json"):
        preflight(cfg, registry)


def test_a_rule_preference_model_without_its_function_is_reported(registry):
    cfg = compose(["pipeline=grpo", "preference_model=rule"], registry)
    with pytest.raises(ConfigError, match=r"preference_model=rule needs preference_model.fn=package.module:function "
                                          r"\(stage 'grpo' uses it\)"):
        preflight(cfg, registry)


def test_an_unknown_evaluate_reference_stage_is_reported_once_with_did_you_mean(registry):
    cfg = compose(["pipeline=iterative_dpo", "evaluate.reference=stage:labl_1"], registry)
    with pytest.raises(ConfigError) as info:
        preflight(cfg, registry)
    message = str(info.value)
    assert message.count("evaluate.reference=stage:labl_1") == 1  # two rounds, one report
    assert "(did you mean 'label_1'?)" in message


@pytest.mark.parametrize("pipeline", sorted(p.stem for p in (ROOT / "conf" / "pipeline").glob("*.yaml")))
def test_every_shipped_pipeline_passes_as_its_run_line_composes_it(registry, pipeline):
    """Preflight is no stricter than the stages: each pipeline with what its Run: line adds."""
    scored = {"ppo", "grpo", "rloo", "online_dpo", "dr_grpo", "dapo", "gspo", "reinforce_pp", "rejection_sampling"}
    cfg = compose([f"pipeline={pipeline}", *(RULE if pipeline in scored else ())], registry)
    plan = preflight(cfg, registry)
    assert [s.name for s in plan.stages] == [str(s.name) for s in stage_plan(cfg)]


class Plain:
    """A plugin optimizer that preflight knows nothing about: no schema, no declared needs."""

    @hookimpl
    def alignkit_optimizers(self):
        class Counting:
            def __init__(self, config):
                self.config = config

            def run(self, ctx):
                return StageResult({"final": 1.0}, {})

        yield OptimizerEntry(name="plain", factory=Counting, description="test optimizer")


def test_a_plugin_optimizer_is_not_required_to_have_components(plugin_manager, tmp_path):
    from alignkit.core.registry import Registry

    plugin_manager.register(Plain(), name="plain-plugin")
    registry = Registry(plugin_manager)
    cfg = compose(["logger=none"], registry)
    cfg.feedback = None
    cfg.pipeline.stages = OmegaConf.create([{"name": "only", "optimizer": "plain"}])
    plan = preflight(cfg, registry)
    assert [(s.name, s.starts_from) for s in plan.stages] == [("only", "model=smollm2-135m-instruct")]
    run_pipeline(cfg, tmp_path / "run", registry)
    assert (tmp_path / "run" / "01-only" / "DONE").exists()


def test_an_evaluate_override_without_an_evaluate_stage_is_a_warning(registry, caplog):
    cfg = compose(["pipeline=reward_model", "evaluate.num_prompts=3"], registry)
    with caplog.at_level("WARNING", logger="alignkit"):
        plan = preflight(cfg, registry)
    expected = ("evaluate.num_prompts=3: pipeline 'reward_model' has no stage that runs 'evaluate', "
                "so this setting changes nothing")
    assert plan.warnings == [expected]
    assert expected in caplog.text
    assert preflight(compose(["pipeline=dpo", "evaluate.num_prompts=3"], registry), registry).warnings == []


def test_the_plan_says_what_each_stage_reads_starts_from_and_runs_with(registry):
    # without tiny-random's smoke recipe (conf/model/tiny-random.yaml): the pipeline's and the defaults' values
    cfg = compose(["pipeline=dpo", "model=tiny-random", "~model.recipe", "trainer.max_steps=5", "optimizer.beta=0.2"],
                  registry)
    plan = preflight(cfg, registry)
    rows = {s.name: s for s in plan.stages}
    assert [(s.index, s.name, s.optimizer, s.reads) for s in plan.stages] == [
        (1, "sft", "sft", "sft (optional)"), (2, "dpo", "dpo", "preferences"), (3, "evaluate", "evaluate", "-")]
    # the command line's max_steps beats the pipeline's 45; its learning rate (3e-5) stays; batch: the default 8
    assert rows["dpo"].settings == {"max_steps": 5, "lr": 3e-05, "batch_size": 8}
    assert rows["dpo"].changed == {"beta": 0.2}
    assert rows["dpo"].starts_from == "sft's model or model=tiny-random"  # sft is skipped without sft data
    assert rows["evaluate"].starts_from == "dpo's model" and rows["evaluate"].settings == {}
    text = plan.describe()
    assert text.splitlines()[0] == "pipeline dpo: model tiny-random, data demo"
    assert "max_steps=5 lr=3e-05 batch_size=8 beta=0.2" in text


@dataclasses.dataclass
class Options:
    beta: float = 0.1
    loss_type: str = "sigmoid"


def test_validate_config_names_the_closest_option():
    with pytest.raises(ConfigError, match=r"optimizer 'x' has no option 'betaa' \(did you mean 'beta'\?\); "
                                          r"its options are: beta, loss_type"):
        validate_config("optimizer", "x", Options, {"betaa": 0.2})
    with pytest.raises(ConfigError, match=r"has no option 'los_type', 'zzz' \(did you mean 'loss_type' for "
                                          r"'los_type'\?\)"):
        validate_config("optimizer", "x", Options, {"los_type": "ipo", "zzz": 1})


def test_config_groups_include_a_plugin_config_root(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKE))
    groups = config_groups(["pkg://alignkit_fake.conf"])
    assert "fake_opt" in groups["optimizer"] and "dpo" in groups["optimizer"]
    assert {"bradley_terry", "judge", "rule"} <= set(groups["preference_model"])
    assert groups["model"] == ["path", "smollm2-135m-instruct", "tiny-random"]
    assert "fake_opt" in config_groups([f"file://{FAKE / 'alignkit_fake' / 'conf'}"])["optimizer"]
    assert "fake_opt" not in config_groups([])["optimizer"]


def test_each_member_of_a_composite_preference_model_is_checked(registry):
    if "composite" not in registry.components("preference_model"):
        pytest.skip("no composite preference model in this tree")
    cfg = compose(["pipeline=grpo", "preference_model=composite",
                   "preference_model.members.concise.fn=alignkit.plugins.rules.demo:concyse",
                   "+preference_model.members.helpful.scalee=2"], registry)
    with pytest.raises(ConfigError) as info:
        preflight(cfg, registry)
    message = str(info.value)
    assert ("preference_model.members.helpful: preference_model 'rule' has no option 'scalee' "
            "(did you mean 'scale'?)") in message
    assert "preference_model.members.concise.fn 'alignkit.plugins.rules.demo:concyse'" in message
