"""A stage's trainer settings come from one place (``pipeline.stage_trainer``), with the precedence
command line > model recipe > pipeline stage > optimizer file > trainer defaults, read from Hydra's
record of the job's overrides (never ``sys.argv``); a stage's options rank the same way
(``pipeline.stage_options_node``: command line > model recipe > pipeline stage > option file)."""

from __future__ import annotations

import sys

from omegaconf import OmegaConf

from alignkit.core.pipeline import stage_plan, stage_trainer
from alignkit.core.testing import compose

NO_RECIPE = "~model.recipe"  # tiny-random's smoke recipe (conf/model/tiny-random.yaml) left out: the four levels below it
BASE = ("pipeline=dpo", "model=tiny-random", NO_RECIPE)
# conf/pipeline/dpo.yaml: the dpo stage's `config: {trainer: {learning_rate: 3.0e-5, max_steps: 45}}`
# conf/optimizer/dpo.yaml: `trainer: {learning_rate: 1.0e-05}`; TrainerConfig: learning_rate 5e-5, max_steps 30


def trainers(*overrides: str, optimizer_file: dict | None = None, base=BASE) -> dict[str, object]:
    cfg = compose([*base, *overrides])
    if optimizer_file:  # an optimizer file's own trainer node, as conf/optimizer/<name>.yaml would write it
        for key, value in optimizer_file.items():
            OmegaConf.update(cfg, f"optimizer.trainer.{key}", value, force_add=True)
    return {str(stage.name): stage_trainer(cfg, stage) for stage in stage_plan(cfg)}


def test_each_of_the_four_levels_wins_over_the_ones_below_it():
    t = trainers("trainer.max_steps=7", optimizer_file={"warmup_ratio": 0.3, "max_steps": 99})["dpo"]
    assert t.lr_scheduler == "linear"  # 4. trainer defaults: nobody else sets it
    assert t.warmup_ratio == 0.3  # 3. the optimizer file beats the defaults (0.1)
    assert t.learning_rate == 3e-5  # 2. the pipeline stage beats the optimizer file (1e-5) and the defaults
    assert t.max_steps == 7  # 1. the command line beats the stage (45), the optimizer file (99), the defaults


def test_the_command_line_beats_the_pipeline_stage_in_both_spellings():
    assert trainers()["dpo"].learning_rate == 3e-5
    assert trainers("trainer.learning_rate=4e-5")["dpo"].learning_rate == 4e-5
    # optimizer.trainer.* (docs/ppo.md, docs/online.md) is the command line too: it beat nothing but the
    # optimizer file before, so the stage's own 3e-5 silently won
    by_stage = trainers("optimizer.trainer.learning_rate=2e-6", "trainer.learning_rate=4e-5")
    assert by_stage["dpo"].learning_rate == 2e-6  # the optimizer's own key beats the general one
    assert by_stage["sft"].learning_rate == 4e-5  # ... and is the dpo stage's only


def test_stages_the_optimizer_file_does_not_run_keep_the_defaults():
    t = trainers(optimizer_file={"warmup_ratio": 0.3})
    assert (t["sft"].learning_rate, t["sft"].warmup_ratio) == (5e-5, 0.1)
    assert t["evaluate"].max_steps == 30


def test_the_precedence_is_read_from_hydra_not_from_sys_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["alignkit", *BASE, "trainer.max_steps=3", "trainer.learning_rate=9e-5"])
    t = trainers()["dpo"]
    assert (t.max_steps, t.learning_rate) == (45, 3e-5)  # the stage's own: this job's overrides set neither


def test_the_run_and_the_dry_run_use_the_same_layering(registry):
    from alignkit.core.preflight import preflight

    cfg = compose([*BASE, "optimizer.trainer.learning_rate=2e-6", "trainer.max_steps=4"], registry)
    plan = {s.name: s.settings for s in preflight(cfg, registry).stages}
    assert plan["dpo"]["lr"] == 2e-6 and plan["dpo"]["max_steps"] == 4
    assert plan["sft"]["lr"] == 5e-5


# -- the model's recipe (a model file's `recipe:`, just below the command line) ----------------------
WITH_RECIPE = ("pipeline=dpo", "model=tiny-random")


def options(*overrides: str) -> dict[str, dict]:
    from alignkit.core.pipeline import stage_options_node

    cfg = compose([*WITH_RECIPE, *overrides])
    return {str(stage.name): stage_options_node(cfg, stage) for stage in stage_plan(cfg)}


def test_the_model_recipe_beats_the_pipeline_stage_and_loses_to_the_command_line():
    t = trainers("model.recipe.trainer.max_steps=11", base=WITH_RECIPE)
    assert t["dpo"].max_steps == 11  # beats the dpo stage's own 45 ...
    assert t["sft"].max_steps == t["evaluate"].max_steps == 11  # ... and the defaults' 30, in every stage
    assert t["dpo"].learning_rate == 3e-5  # a key the recipe does not set: the stage's, as before
    t = trainers("model.recipe.trainer.max_steps=11", "trainer.max_steps=5", "+optimizer.trainer.max_steps=7",
                 base=WITH_RECIPE)
    assert (t["sft"].max_steps, t["dpo"].max_steps) == (5, 7)  # both spellings of the command line win


def test_the_recipe_sets_the_options_of_the_stages_that_run_its_names():
    o = options("model.recipe.dpo.kl_prompts=3", "model.recipe.evaluate.num_prompts=5")
    assert o["dpo"]["kl_prompts"] == 3 and o["evaluate"]["num_prompts"] == 5
    assert "kl_prompts" not in o["sft"] and "num_prompts" not in o["dpo"]
    # `optimizer=orpo` runs orpo in the same stage: the recipe's dpo options are not its
    orpo = options("optimizer=orpo", "model.recipe.dpo.kl_prompts=3")
    assert "kl_prompts" not in orpo["orpo"]


def test_the_command_line_beats_the_recipe_options():
    o = options("model.recipe.dpo.kl_prompts=3", "model.recipe.evaluate.num_prompts=5",
                "optimizer.kl_prompts=9", "evaluate.num_prompts=20")
    assert o["dpo"]["kl_prompts"] == 9 and o["evaluate"]["num_prompts"] == 20


def test_the_smoke_recipe_runs_every_stage_briefly_and_a_model_path_has_none():
    t = trainers(base=WITH_RECIPE)
    assert 0 < t["sft"].max_steps < 30 and 0 < t["dpo"].max_steps < 45  # fewer steps, still training
    assert 0 < options()["evaluate"]["num_prompts"] < 24
    from_path = compose(["pipeline=dpo", "model=path", "model.name_or_path=tiny-random"])
    assert "recipe" not in from_path.model
    assert stage_trainer(from_path, stage_plan(from_path)[1]).max_steps == 45
