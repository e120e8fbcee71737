"""Rounds (core/pipeline.py): a ``repeat: true`` block of stages runs ``pipeline.rounds`` times,
each copy named ``<stage>_<k>``, its config's seed moved on by the round; evaluate can name the
model a stage started from (``reference: stage:NAME``)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from alignkit.core import ConfigError
from alignkit.core.pipeline import expand_rounds, stage_plan
from alignkit.core.testing import compose


def stages(*entries):
    return [OmegaConf.create(e) for e in entries]


def test_the_repeated_block_is_copied_per_round_with_moving_seeds():
    plan = expand_rounds(stages(
        {"name": "sft", "optimizer": "sft"},
        {"name": "label", "optimizer": "label", "config": {"seed": 5, "prompts": 3}, "repeat": True},
        {"name": "dpo", "optimizer": "dpo", "repeat": True},
        {"name": "evaluate", "optimizer": "evaluate", "config": {"seed": None}, "repeat": True},
        {"name": "final", "optimizer": "evaluate"},
    ), rounds=3)
    assert [s.name for s in plan] == ["sft", "label_1", "dpo_1", "evaluate_1", "label_2", "dpo_2", "evaluate_2",
                                      "label_3", "dpo_3", "evaluate_3", "final"]
    assert [s.get("round") for s in plan] == [None, 1, 1, 1, 2, 2, 2, 3, 3, 3, None]
    assert [s.config.seed for s in plan if s.name.startswith("label")] == [5, 6, 7]
    assert all(s.config.prompts == 3 for s in plan if s.name.startswith("label"))
    assert all(s.config.seed is None for s in plan if s.name.startswith("evaluate_"))  # not an int: kept
    assert "repeat" not in plan[1]
    assert [s.name for s in expand_rounds(stages({"name": "a", "optimizer": "sft", "repeat": True}))] == ["a_1"]


@pytest.mark.parametrize(("entries", "rounds", "message"), [
    (({"name": "a", "optimizer": "sft", "repeat": True}, {"name": "b", "optimizer": "sft"},
      {"name": "c", "optimizer": "sft", "repeat": True}), 2, "must follow each other"),
    (({"name": "a", "optimizer": "sft"},), 2, "no stage of the pipeline has 'repeat: true'"),
    (({"name": "a", "optimizer": "sft", "repeat": True},), 0, "at least 1"),
])
def test_malformed_rounds_are_errors(entries, rounds, message):
    with pytest.raises(ConfigError, match=message):
        expand_rounds(stages(*entries), rounds)


def test_pipelines_expand_rounds_from_the_command_line():
    cfg = compose(["pipeline=iterative_dpo", "pipeline.rounds=3", "label.seed=10"])
    names = [str(s.name) for s in stage_plan(cfg)]
    assert names == ["sft", *[f"{n}_{k}" for k in (1, 2, 3) for n in ("label", "dpo", "evaluate")]]
    assert [s.config.seed for s in stage_plan(cfg) if str(s.name).startswith("label")] == [10, 11, 12]
    cfg = compose(["pipeline=rejection_sampling", "pipeline.rounds=1"])
    assert [str(s.name) for s in stage_plan(cfg)] == ["sft", "best_of_n_1", "sft_1", "evaluate_1"]


def test_two_stages_with_one_name_are_an_error():
    cfg = compose(["pipeline=sft", "pipeline.stages=[{name: a, optimizer: sft}, {name: a, optimizer: sft}]"])
    with pytest.raises(ConfigError, match="more than one stage a"):
        stage_plan(cfg)


def test_evaluate_reference_names_the_model_a_stage_started_from(tmp_path, registry):
    from alignkit.core.pipeline import RunContext, StageContext
    from alignkit.core.rundir import RunDir
    from alignkit.core.types import StageResult
    from alignkit.plugins.evaluation.evaluate import reference_spec

    cfg = compose(["model=tiny-random"], registry)
    run = RunContext(cfg, registry, RunDir(tmp_path, pipeline="x"))
    previous = {"sft": StageResult(artifacts={"model": "01-sft/model"}), "label_1": StageResult(),
                "dpo_1": StageResult(artifacts={"model": "03-dpo_1/model"}),
                "dpo_2": StageResult(artifacts={"model": "04-dpo_2/model"})}
    ctx = StageContext(run=run, name="evaluate", index=5, dir=tmp_path / "05-evaluate", config=cfg.optimizer,
                       trainer=cfg.trainer, policy=run.model_spec(), previous=previous)
    assert reference_spec(ctx, "stage:label_1").name_or_path == str(tmp_path.resolve() / "01-sft/model")
    assert reference_spec(ctx, "stage:dpo_2").name_or_path == str(tmp_path.resolve() / "03-dpo_1/model")
    assert reference_spec(ctx, "stage:sft").name_or_path == "tiny-random"  # nothing trained before it
    assert reference_spec(ctx, "auto").name_or_path == str(tmp_path.resolve() / "03-dpo_1/model")
    with pytest.raises(ConfigError, match="no earlier stage named 'label_9'"):
        reference_spec(ctx, "stage:label_9")


def variety(prompt, response):
    return float(len(set(response)))


@pytest.mark.slow  # runs and regrows a multi-round pipeline (over 3 s)
def test_a_finished_run_grows_by_rounds(run_alignkit, tmp_path):
    """Rerunning with a larger pipeline.rounds keeps the finished rounds and adds the new ones."""
    import json

    args = ("pipeline=rejection_sampling", "preference_model=rule", f"preference_model.fn={__name__}:variety",
            "pipeline.stages=[{name: best_of_n, optimizer: best_of_n, config: ${best_of_n}, repeat: true}]",
            "best_of_n.prompts=2", "best_of_n.samples=2", "best_of_n.max_new_tokens=4")
    first = run_alignkit(*args, "pipeline.rounds=1", run_dir=tmp_path / "run")
    done = (first.path / "01-best_of_n_1" / "DONE").stat().st_mtime_ns
    second = run_alignkit(*args, "pipeline.rounds=2", run_dir=tmp_path / "run")
    assert (second.path / "01-best_of_n_1" / "DONE").stat().st_mtime_ns == done  # not run again
    assert (second.path / "02-best_of_n_2" / "DONE").exists()
    rounds = [json.loads(line) for line in (second.path / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [1, 2]
