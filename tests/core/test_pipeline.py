"""The stage runner: lifecycle hook order, after_run on failure, resume skips DONE stages."""

import json

import pytest
from omegaconf import OmegaConf

from alignkit.core import ConfigError, OptimizerEntry, StageResult, hookimpl
from alignkit.core.pipeline import run_pipeline
from alignkit.core.registry import Registry
from alignkit.core.testing import compose


class Recorder:
    """Implements every lifecycle hook and a counting optimizer."""

    def __init__(self, fail_in=None):
        self.calls = []
        self.runs = {}
        self.fail_in = fail_in

    @hookimpl
    def alignkit_optimizers(self):
        recorder = self

        class Counting:
            def __init__(self, config):
                self.config = config

            def run(self, ctx):
                recorder.runs[ctx.name] = recorder.runs.get(ctx.name, 0) + 1
                if ctx.name == recorder.fail_in:
                    raise RuntimeError("boom")
                ctx.log(1, {"loss": 1.0})
                if not ctx.run.stop_requested:
                    ctx.log(2, {"loss": 0.5})
                return StageResult({"final": 0.5}, {"model": ctx.artifact(ctx.dir)})

        yield OptimizerEntry(name="counting", factory=Counting, description="test optimizer")

    @hookimpl
    def alignkit_configure(self, cfg):
        self.calls.append("configure")

    @hookimpl
    def alignkit_before_run(self, run):
        self.calls.append("before_run")

    @hookimpl
    def alignkit_after_step(self, run, stage, step, metrics):
        self.calls.append(f"after_step:{stage}:{step}")

    @hookimpl
    def alignkit_after_stage(self, run, stage, result):
        self.calls.append(f"after_stage:{stage}")

    @hookimpl
    def alignkit_after_run(self, run, error):
        self.calls.append(f"after_run:{type(error).__name__ if error else None}")


def two_stage_config():
    cfg = compose(["logger=none"])
    cfg.pipeline.stages = OmegaConf.create([{"name": "first", "optimizer": "counting"},
                                            {"name": "second", "optimizer": "counting"}])
    return cfg


def registry_with(plugin):
    from alignkit.core.manager import get_plugin_manager

    pm = get_plugin_manager()
    pm.register(plugin, name="recorder")
    return Registry(pm)


def test_lifecycle_hooks_fire_in_order(tmp_path):
    rec = Recorder()
    run_pipeline(two_stage_config(), tmp_path, registry_with(rec))
    assert rec.calls == [
        "configure", "before_run",
        "after_step:first:1", "after_step:first:2", "after_stage:first",
        "after_step:second:1", "after_step:second:2", "after_stage:second",
        "after_run:None",
    ]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert list(summary["stages"]) == ["first", "second"]
    assert (tmp_path / "01-first" / "DONE").exists() and (tmp_path / "02-second" / "DONE").exists()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(x["stage"], x["step"]) for x in lines] == [("first", 1), ("first", 2), ("second", 1), ("second", 2)]


def test_after_run_fires_on_failure_and_resume_skips_done_stages(tmp_path):
    rec = Recorder(fail_in="second")
    with pytest.raises(RuntimeError, match="boom"):
        run_pipeline(two_stage_config(), tmp_path, registry_with(rec))
    assert rec.calls[-1] == "after_run:RuntimeError"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and "boom" in summary["error"]
    assert summary["stages"]["second"]["status"] == "failed"

    rec2 = Recorder()
    run_pipeline(two_stage_config(), tmp_path, registry_with(rec2))
    assert rec2.runs == {"second": 1}, "the DONE stage is not run again"
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "completed"


def test_request_stop_ends_the_stage(tmp_path):
    rec = Recorder()

    class Stopper:
        @hookimpl
        def alignkit_after_step(self, run, stage, step, metrics):
            run.request_stop()

    reg = registry_with(rec)
    reg.pm.register(Stopper(), name="stopper")
    run_pipeline(two_stage_config(), tmp_path, reg)
    steps = [c for c in rec.calls if c.startswith("after_step")]
    assert steps == ["after_step:first:1", "after_step:second:1"], "each stage stops; the flag resets per stage"


def test_unknown_stage_optimizer_fails_before_any_work(tmp_path):
    cfg = two_stage_config()
    cfg.pipeline.stages[1].optimizer = "countin"
    with pytest.raises(ConfigError, match="unknown optimizer 'countin'.*Did you mean 'counting'"):
        run_pipeline(cfg, tmp_path / "run", registry_with(Recorder()))
    assert not (tmp_path / "run").exists()


def test_invalid_optimizer_option_names_the_key(tmp_path, registry):
    cfg = compose(["pipeline=sft", "logger=none", "model=tiny-random", "+optimizer.pakcing=false"])
    with pytest.raises(ConfigError, match=r"optimizer 'sft' has no option 'pakcing'"):
        run_pipeline(cfg, tmp_path, registry)


@pytest.mark.slow  # a whole pipeline on the tiny model (over 3 s)
def test_command_line_trainer_keys_beat_a_pipeline_stages_own(run_alignkit):
    """pipeline=dpo gives its dpo stage 45 steps; `trainer.max_steps=2` on the command line wins."""
    import json

    rd = run_alignkit("pipeline=dpo", "model=tiny-random", "trainer.max_steps=2", "optimizer.kl_prompts=0")
    records = [json.loads(line) for line in (rd.path / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r.get("stage") == "dpo" and "loss" in r]
    assert steps == [1, 2]


def test_pipeline_skip_leaves_a_stage_out_and_says_so(tmp_path):
    rec = Recorder()
    cfg = two_stage_config()
    cfg.pipeline.skip = ["second"]
    run_pipeline(cfg, tmp_path, registry_with(rec))
    assert rec.runs == {"first": 1}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["stages"]["second"]["status"] == "skipped"
    assert not (tmp_path / "02-second").exists()


def test_pipeline_skip_by_optimizer_name_and_unknown_names(tmp_path):
    rec = Recorder()
    cfg = two_stage_config()
    cfg.pipeline.skip = ["counting"]  # an optimizer name: every stage it runs
    run_pipeline(cfg, tmp_path / "a", registry_with(rec))
    assert rec.runs == {}
    cfg.pipeline.skip = ["evaluat"]
    with pytest.raises(ConfigError, match=r"pipeline.skip names 'evaluat'.*its stages: first, second"):
        run_pipeline(cfg, tmp_path / "b", registry_with(Recorder()))


def test_pipeline_skip_is_a_documented_option():
    assert list(compose(["pipeline=dpo", "pipeline.skip=[evaluate]"]).pipeline.skip) == ["evaluate"]
