"""Whole pipelines on the tiny model, in-process: DPO, LoRA, reference caching, loggers."""

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # whole pipelines on the tiny model

DEMO = Path(__file__).parents[2] / "plugins" / "data" / "demo"
DPO_FAST = ("optimizer.max_eval_pairs=8", "optimizer.kl_prompts=2", "optimizer.kl_max_new_tokens=8")


@pytest.fixture
def run_dpo(run_alignkit, tmp_path):
    """DPO runs with a reference cache private to the test."""

    def _run(*args, **kw):
        return run_alignkit(*args, *DPO_FAST, f"optimizer.cache_dir={tmp_path / 'refcache'}", **kw)

    return _run


def stage(run_dir, name):
    return json.loads((Path(run_dir.path) / "summary.json").read_text())["stages"][name]


def test_dpo_pipeline_from_preferences_only_skips_sft(run_dpo):
    rd = run_dpo("pipeline=dpo", "data=files", f"data.preferences={DEMO / 'preferences.jsonl'}",
                 f"data.prompts={DEMO / 'prompts.jsonl'}")
    assert stage(rd, "sft")["status"] == "skipped"
    dpo = stage(rd, "dpo")
    assert dpo["status"] == "completed" and dpo["artifacts"] == {"model": "02-dpo/model"}
    for key in ["rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy", "logps/chosen",
                "logps/rejected", "length/chosen", "length/rejected"]:
        assert f"train/{key}" in dpo["metrics"] and f"eval/{key}" in dpo["metrics"], key
    assert {"eval/kl_per_sequence", "eval/kl_per_token"} <= set(dpo["metrics"])
    steps = [json.loads(x) for x in (rd.path / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if s["stage"] == "dpo" and "loss" in s and "eval/loss" not in s] == [1, 2]


def test_dpo_pipeline_runs_sft_first_on_the_demo_data(run_dpo):
    rd = run_dpo("pipeline=dpo", "trainer.max_steps=1")
    assert stage(rd, "sft")["status"] == "completed"
    assert stage(rd, "dpo")["status"] == "completed"


def test_reference_log_probs_are_cached_across_runs(run_dpo, tmp_path):
    args = ("pipeline=dpo", "data=files", f"data.preferences={DEMO / 'preferences.jsonl'}", "optimizer.kl_prompts=0")
    first = stage(run_dpo(*args, run_dir=tmp_path / "a"), "dpo")["metrics"]
    second = stage(run_dpo(*args, "optimizer.beta=0.5", run_dir=tmp_path / "b"), "dpo")["metrics"]
    assert first["reference/computed_pairs"] > 0
    assert second["reference/computed_pairs"] == 0, "a sweep over beta reuses the reference log-probs"


@pytest.mark.parametrize("reference", ["copy", "precompute"])
def test_reference_modes_agree_on_the_first_step(run_dpo, tmp_path, reference):
    rd = run_dpo("pipeline=dpo", "data=files", f"data.preferences={DEMO / 'preferences.jsonl'}",
                 "trainer.max_steps=1", f"optimizer.reference={reference}", "optimizer.kl_prompts=0",
                 run_dir=tmp_path / reference)
    first = json.loads((rd.path / "metrics.jsonl").read_text().splitlines()[0])
    # Policy == reference before the first update: margin 0, loss log(2).
    assert abs(first["loss"] - 0.693147) < 1e-4
    assert abs(first["rewards/margin"]) < 1e-5


def test_lora_sft_and_dpo_save_merged_models(run_dpo):
    rd = run_dpo("pipeline=dpo", "trainer.lora=true", "trainer.learning_rate=1e-2")
    from safetensors.torch import load_file

    weights = load_file(rd.path / "02-dpo" / "model" / "model.safetensors")
    assert not any("lora" in key for key in weights), "adapters are merged into the saved model"
    sft_weights = load_file(rd.path / "01-sft" / "model" / "model.safetensors")
    changed = [k for k in weights if not torch.equal(weights[k], sft_weights[k])]
    assert changed, "DPO with LoRA changed the merged weights"


def test_gradient_checkpointing_option_runs(run_alignkit):
    rd = run_alignkit("pipeline=sft", "trainer.gradient_checkpointing=true")
    assert stage(rd, "sft")["status"] == "completed"


def test_wandb_logger_writes_an_offline_run(run_alignkit, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    rd = run_alignkit("pipeline=sft", "logger=wandb", "trainer.max_steps=1")
    offline = list((rd.path / "wandb").glob("offline-run-*"))
    assert offline and any(offline[0].glob("*.wandb"))


def test_reference_fingerprint_follows_the_weights_not_the_folder(tmp_path, tiny_model):
    from alignkit.plugins.dpo.dpo import model_fingerprint

    tiny_model.model.save_pretrained(tmp_path / "a")
    tiny_model.model.save_pretrained(tmp_path / "b")
    assert model_fingerprint(str(tmp_path / "a"), {}) == model_fingerprint(str(tmp_path / "b"), {})
    assert model_fingerprint("tiny-random", {"seed": 0}) != model_fingerprint("tiny-random", {"seed": 1})
