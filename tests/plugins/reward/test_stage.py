"""The ``reward`` optimizer as a pipeline stage and the ``bradley_terry`` preference model built
from its artifact, on tiny-random: learning, soft labels, ensembles with LoRA, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from alignkit.core import ConfigError, hookimpl
from alignkit.core.pipeline import RunContext, StageContext, run_pipeline
from alignkit.core.testing import FAST_OVERRIDES, compose
from alignkit.core.types import ModelSpec
from alignkit.plugins.reward.bradley_terry import METADATA

from .conftest import learnable_pairs, write

LEARN = ("trainer.max_steps=25", "trainer.batch_size=8", "trainer.learning_rate=3e-3", "trainer.warmup_ratio=0")


def data_args(train: Path, held_out: Path) -> tuple[str, ...]:
    return ("pipeline=reward_model", "data=files", f"data.preferences={train}", f"data.eval_preferences={held_out}")


def stage(rd, name="reward_model") -> dict:
    return json.loads((Path(rd.path) / "summary.json").read_text())["stages"][name]


def preference_model(rd, registry, node: dict):
    """Build ``preference_model=...`` the way a later stage of the same run would."""
    cfg = compose([*FAST_OVERRIDES], registry)
    run = RunContext(cfg, registry, rd)
    ctx = StageContext(run=run, name="ppo", index=3, dir=rd.path / "03-ppo", config=OmegaConf.create({}),
                       trainer=cfg.trainer, policy=run.model_spec(),
                       previous={"sft": rd.stage_result("sft"), "reward_model": rd.stage_result("reward_model")})
    return ctx.preference_model(OmegaConf.create(node))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, learnable_files):
    """One reward model trained on the learnable set (shared by the tests below)."""
    from alignkit.core.registry import Registry

    registry = Registry()
    cfg = compose([*FAST_OVERRIDES, *data_args(*learnable_files), *LEARN], registry)
    return run_pipeline(cfg, tmp_path_factory.mktemp("rm") / "run", registry), registry


@pytest.mark.slow  # trains a reward model until it learns (over 3 s)
def test_the_stage_learns_a_learnable_preference_set(trained, learnable_files):
    rd, registry = trained
    assert stage(rd, "sft")["status"] == "skipped"
    result = stage(rd)
    assert result["artifacts"] == {"reward_model": "02-reward_model/reward_model"}, "never named `model`"
    metrics = result["metrics"]
    assert metrics["eval/accuracy"] >= 0.9 and metrics["eval/margin"] > 0.5, metrics
    assert metrics["data/train_pairs"] == 160 and metrics["eval/pairs"] == 40
    for key in ("train/loss", "train/accuracy", "train/margin", "train/reward_mean", "eval/reward_mean",
                "eval/reward_std", "eval/loss"):
        assert key in metrics, key
    logged = [json.loads(line) for line in (rd.path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in logged if r["stage"] == "reward_model" and "accuracy" in r]
    assert [r["step"] for r in steps] == list(range(1, 26))
    assert steps[-1]["loss"] < steps[0]["loss"]
    folder = rd.path / result["artifacts"]["reward_model"]
    meta = json.loads((folder / METADATA).read_text())
    assert meta["heads"] == 1 and meta["max_length"] == 96 and meta["eval"]["accuracy"] == metrics["eval/accuracy"]
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()

    # the preference model of a later stage finds the artifact and agrees with the held-out accuracy
    scorer = preference_model(rd, registry, {"name": "bradley_terry"})
    assert scorer.path == folder
    rows = [json.loads(line) for line in learnable_files[1].read_text().splitlines()]
    prompts = [r["prompt"] for r in rows]
    chosen = scorer.score(prompts, [r["chosen"] for r in rows])
    rejected = scorer.score(prompts, [r["rejected"] for r in rows])
    assert chosen.shape == (40,) and chosen.dtype == torch.float32
    assert (chosen > rejected).float().mean().item() == pytest.approx(metrics["eval/accuracy"])


def test_a_completed_stage_is_skipped_on_rerun(trained, learnable_files):
    rd, registry = trained
    weights = rd.path / "02-reward_model" / "reward_model" / "model.safetensors"
    mtime, lines = weights.stat().st_mtime_ns, (rd.path / "metrics.jsonl").read_text().count("\n")
    cfg = compose([*FAST_OVERRIDES, *data_args(*learnable_files), *LEARN], registry)
    again = run_pipeline(cfg, rd.path, registry)
    assert stage(again)["status"] == "completed"
    assert weights.stat().st_mtime_ns == mtime
    assert (rd.path / "metrics.jsonl").read_text().count("\n") == lines, "nothing was trained again"


@pytest.mark.slow  # trains reward models (over 3 s)
def test_soft_labels_and_an_ensemble(tmp_path, run_alignkit):
    """strength 0 says the *rejected* answer is better: the model must learn the reverse order.
    Three heads, each on its own bootstrap resample; scoring penalises their disagreement."""
    flipped = [{**row, "strength": 0.0} for row in learnable_pairs(160, 0)]
    held_out = [{**row, "strength": 0.0} for row in learnable_pairs(40, 1)]
    train, evalf = write(tmp_path / "train.jsonl", flipped), write(tmp_path / "eval.jsonl", held_out)
    rd = run_alignkit(*data_args(train, evalf), *LEARN, "optimizer.ensemble=3", "optimizer.centering=0.01",
                      "optimizer.margin=0.1")
    metrics = stage(rd)["metrics"]
    assert metrics["eval/accuracy"] >= 0.9, metrics
    assert metrics["eval/head_accuracy_min"] >= 0.8 and "train/ensemble_std" in metrics
    folder = rd.path / "02-reward_model" / "reward_model"
    assert json.loads((folder / METADATA).read_text())["bootstrap"] is True

    plain, penalised = scorer_at(folder, 0.0), scorer_at(folder, 2.0)
    prompts, responses = [r["prompt"] for r in held_out], [r["chosen"] for r in held_out]
    heads = plain.score_heads(prompts, responses)
    assert heads.shape == (40, 3) and bool((heads.std(1) > 0).all()), "the heads differ"
    torch.testing.assert_close(penalised.score(prompts, responses), heads.mean(1) - 2.0 * heads.std(1))
    rejected = plain.score(prompts, [r["rejected"] for r in held_out])
    assert (rejected > plain.score(prompts, responses)).float().mean().item() >= 0.9


def test_lora_trains_the_backbone_and_saves_a_merged_model(tmp_path, run_alignkit, learnable_files, tiny_model):
    rd = run_alignkit(*data_args(*learnable_files), "trainer.max_steps=3", "trainer.learning_rate=1e-2",
                      "optimizer.ensemble=2", "trainer.lora=true", "trainer.lora_r=4")
    from safetensors.torch import load_file

    weights = load_file(rd.path / "02-reward_model" / "reward_model" / "model.safetensors")
    assert not any("lora" in k or "modules_to_save" in k for k in weights), "adapters are merged"
    assert weights["score.weight"].shape == (2, 64)
    base = tiny_model.model.model.state_dict()
    changed = [k for k in base if f"model.{k}" in weights and not torch.equal(weights[f"model.{k}"], base[k])]
    assert any("q_proj" in k for k in changed), "the LoRA updates reached the backbone"
    assert not any("embed_tokens" in k or "norm" in k for k in changed), "only adapted layers changed"


def scorer_at(folder: Path, k: float):
    from alignkit.plugins.reward.preference_model import BradleyTerryConfig, build

    return build(BradleyTerryConfig(path=str(folder), uncertainty_penalty=k, device="cpu"), None)


class _CrashAt:
    """A plugin that kills the run after a given step (like a killed process)."""

    def __init__(self, step: int) -> None:
        self.step = step

    @hookimpl
    def alignkit_after_step(self, run, stage, step, metrics):
        if stage == "reward_model" and step == self.step and "loss" in metrics:
            raise KeyboardInterrupt("simulated crash")


@pytest.mark.slow  # trains, stops and resumes (over 3 s)
def test_an_interrupted_stage_resumes_to_the_same_weights(tmp_path, learnable_files, plugin_manager):
    from alignkit.core.registry import Registry
    from safetensors.torch import load_file

    args = [*FAST_OVERRIDES, *data_args(*learnable_files), "trainer.max_steps=4", "trainer.checkpoint_every=2",
            "trainer.learning_rate=1e-3"]
    registry = Registry(plugin_manager)
    crasher = _CrashAt(3)
    plugin_manager.register(crasher)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(compose(args, registry), tmp_path / "resumed", registry)
    plugin_manager.unregister(crasher)
    assert (tmp_path / "resumed" / "02-reward_model" / "checkpoints" / "step-0000002").is_dir()
    run_pipeline(compose(args, registry), tmp_path / "resumed", registry)
    logged = [json.loads(x) for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in logged if r["stage"] == "reward_model" and "accuracy" in r]
    assert steps == [1, 2, 3, 3, 4], "the rerun continued from the step-2 checkpoint"
    run_pipeline(compose(args, registry), tmp_path / "straight", registry)
    resumed = load_file(tmp_path / "resumed" / "02-reward_model" / "reward_model" / "model.safetensors")
    straight = load_file(tmp_path / "straight" / "02-reward_model" / "reward_model" / "model.safetensors")
    assert resumed.keys() == straight.keys()
    for key in resumed:
        torch.testing.assert_close(resumed[key], straight[key], atol=1e-6, rtol=1e-5, msg=key)


@pytest.mark.parametrize(("override", "message"), [
    ("optimizer.ensemble=0", "ensemble must be at least 1"),
    ("optimizer.margin=-1", "margin must be a finite number >= 0"),
    ("optimizer.centering=-0.5", "centering must be a finite number >= 0"),
    ("+optimizer.heads=2", "has no option 'heads'"),
    ("optimizer.ensemble=two", "ensemble"),
])
def test_bad_optimizer_options_are_config_errors(run_alignkit, learnable_files, override, message):
    with pytest.raises(ConfigError, match=message):
        run_alignkit(*data_args(*learnable_files), override)


def test_a_preference_model_without_a_reward_model_is_a_config_error(trained, tmp_path, registry):
    rd, _ = trained
    cfg = compose([*FAST_OVERRIDES], registry)
    run = RunContext(cfg, registry, rd)
    ctx = StageContext(run=run, name="ppo", index=1, dir=tmp_path, config=OmegaConf.create({}),
                       trainer=cfg.trainer, policy=run.model_spec(), previous={})
    with pytest.raises(ConfigError, match="needs a reward model: set preference_model.path"):
        ctx.preference_model(OmegaConf.create({"name": "bradley_terry"}))
    with pytest.raises(ConfigError, match="does not exist"):
        ctx.preference_model(OmegaConf.create({"name": "bradley_terry", "path": str(tmp_path / "none")}))
    with pytest.raises(ConfigError, match="uncertainty_penalty must be >= 0"):
        ctx.preference_model(OmegaConf.create({"name": "bradley_terry", "uncertainty_penalty": -1,
                                               "path": str(rd.path / "02-reward_model" / "reward_model")}))
    with pytest.raises(ConfigError, match="has no option 'fn'"):
        ctx.preference_model(OmegaConf.create({"name": "bradley_terry", "fn": "x:y"}))


def test_a_preference_model_reads_the_reward_model_of_the_stage_it_names(trained, tmp_path, registry):
    """Two reward stages in one run (pipeline=llama2_chat): ``stage`` picks one; without it, the newest."""
    import shutil

    from alignkit.core.rundir import RunDir
    from alignkit.core.types import StageResult

    rd, _ = trained
    run_dir = RunDir(tmp_path / "run", pipeline="llama2_chat")
    previous = {}
    for index, name in ((2, "reward_helpful"), (3, "reward_safe")):
        folder = run_dir.path / f"0{index}-{name}" / "reward_model"
        shutil.copytree(rd.path / "02-reward_model" / "reward_model", folder)
        previous[name] = StageResult(artifacts={"reward_model": f"0{index}-{name}/reward_model"})
    previous["sft_1"] = StageResult(artifacts={"model": "04-sft_1/model"})
    cfg = compose([*FAST_OVERRIDES], registry)
    ctx = StageContext(run=RunContext(cfg, registry, run_dir), name="ppo", index=5, dir=tmp_path / "05-ppo",
                       config=OmegaConf.create({}), trainer=cfg.trainer, policy=ModelSpec("tiny-random"),
                       previous=previous)

    def folder(**node):
        return ctx.preference_model(OmegaConf.create({"name": "bradley_terry", "device": "cpu", **node})).path

    assert folder(stage="reward_helpful") == run_dir.path / "02-reward_helpful" / "reward_model"
    assert folder(stage="reward_safe") == run_dir.path / "03-reward_safe" / "reward_model"
    assert folder() == run_dir.path / "03-reward_safe" / "reward_model", "no stage: the newest"
    with pytest.raises(ConfigError, match="stage=reward_help: no stage named 'reward_help' ran before stage 'ppo'; "
                                          "the earlier stages that trained one: reward_helpful, reward_safe"):
        folder(stage="reward_help")
    with pytest.raises(ConfigError, match="stage=sft_1: stage 'sft_1' left no reward model"):
        folder(stage="sft_1")
    with pytest.raises(ConfigError, match="not both"):
        folder(stage="reward_safe", path=str(run_dir.path / "02-reward_helpful" / "reward_model"))


def test_the_pipeline_and_option_compose(registry):
    cfg = compose(["pipeline=reward_model"], registry)
    assert cfg.optimizer.name == "reward"
    assert [s.name for s in cfg.pipeline.stages] == ["sft", "reward_model"]
    cfg = compose(["pipeline=reward_model", "preference_model=bradley_terry", "optimizer.ensemble=4"], registry)
    assert cfg.preference_model.name == "bradley_terry" and cfg.optimizer.ensemble == 4
