"""Data parallelism as a user runs it: ``alignkit ... launcher.num_processes=2`` on CPU (gloo).

One 2-process run of the dpo pipeline (an SFT stage, then DPO) must reach the weights of a
1-process run with the same global batch, write the run directory once, and resume from a
checkpoint under 2 processes. The learning rate is high so that the weights move far more
than the tolerance: a run that trained on half the batch, or skipped the all-reduce, fails.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # two-process runs of whole pipelines

ARGS = ["pipeline=dpo", "model=tiny-random", "logger=none", "trainer.batch_size=4", "trainer.grad_accum=2",
        "trainer.max_length=64", "trainer.progress=false", "trainer.max_steps=4", "trainer.checkpoint_every=2",
        "trainer.learning_rate=1e-3", "trainer.warmup_ratio=0", "optimizer.trainer.learning_rate=1e-3",
        "optimizer.max_eval_pairs=8", "optimizer.kl_prompts=2", "optimizer.kl_max_new_tokens=8",
        # the pipeline's closing evaluate stage, kept small (it is not what this file tests)
        "evaluate.num_prompts=2", "evaluate.max_new_tokens=8", "evaluate.safety_prompts=0",
        "evaluate.sycophancy_prompts=0", "evaluate.report=false"]
STAGES = ("01-sft", "02-dpo")  # the training stages


def alignkit(*args):
    exe = Path(sys.executable).parent / "alignkit"
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled")
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "ALIGNKIT_LAUNCHED"):  # not inside a launch already
        env.pop(var, None)
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"alignkit failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc


def weights(run, stage):
    from safetensors.torch import load_file

    return load_file(run / stage / "model" / "model.safetensors")


def losses(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["stage"], r["step"], r["loss"]) for r in records if "loss" in r and r["stage"] in ("sft", "dpo")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same command with 2 processes (a subprocess) and with 1 (in this process)."""
    from alignkit.core.pipeline import run_pipeline
    from alignkit.core.testing import compose

    base = tmp_path_factory.mktemp("multiprocess")
    cache = f"optimizer.cache_dir={base / 'reference-cache'}"
    two = base / "two"
    proc = alignkit(*ARGS, cache, "launcher.num_processes=2", f"hydra.run.dir={two}")
    assert "accelerate" in proc.stderr and f"run directory: {two}" in proc.stdout
    one = base / "one"
    run_pipeline(compose([*ARGS, cache]), one)
    return {"one": one, "two": two, "cache": cache}


def test_two_processes_reach_the_weights_of_one_with_the_same_global_batch(runs):
    from alignkit.core.registry import Registry
    from alignkit.core.testing import compose

    one, two = runs["one"], runs["two"]
    # The logged loss is the global batch's: equal from the first step on.
    assert [(s, n) for s, n, _ in losses(two)] == [(s, n) for s, n, _ in losses(one)]
    assert [(s, n) for s, n, _ in losses(two)] == [(s, n) for s in ("sft", "dpo") for n in (1, 2, 3, 4)]
    for (_, _, a), (_, _, b) in zip(losses(one), losses(two)):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    cfg = compose(ARGS)
    initial = Registry().load_model(_spec(cfg), "policy").model.state_dict()
    for stage in STAGES:
        a, b = weights(one, stage), weights(two, stage)
        assert a.keys() == b.keys()
        moved = max((a[k] - initial[k]).abs().max().item() for k in a)
        apart = max((a[k] - b[k]).abs().max().item() for k in a)
        assert moved > 1e-3, f"{stage}: training barely moved the weights ({moved}); the check would be empty"
        assert apart < 1e-4, f"{stage}: 2 processes differ from 1 by {apart} (weights moved {moved})"


def _spec(cfg):
    from alignkit.core.types import ModelSpec

    return ModelSpec(str(cfg.model.name_or_path), options=dict(cfg.model.options))


def test_the_run_directory_is_written_once(runs):
    two = runs["two"]
    keys = [(stage, step) for stage, step, _ in losses(two)]
    assert len(keys) == len(set(keys)) == 8, "each step is logged once, by the main process"
    summary = json.loads((two / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert {s: r["status"] for s, r in summary["stages"].items() if s in ("sft", "dpo")} == \
        {"sft": "completed", "dpo": "completed"}
    assert all(r["status"] == "completed" for r in summary["stages"].values())
    assert "eval/kl_per_token" in summary["stages"]["dpo"]["metrics"], "the main process ran the KL estimate"
    for stage in STAGES:
        assert (two / stage / "DONE").exists()
        assert sorted(p.name for p in (two / stage / "checkpoints").iterdir()) == ["step-0000002"]
        assert not [p for p in (two / stage).rglob(".*") if p.name != ".hydra"], "no temporary leftovers"
    assert (two / ".hydra" / "config.yaml").exists()


def test_a_checkpoint_resumes_under_two_processes(runs):
    two = runs["two"]
    straight = weights(two, "02-dpo")
    # As if the run had died after the DPO checkpoint at step 2: no DONE, no final model.
    (two / "02-dpo" / "DONE").unlink()
    import shutil

    shutil.rmtree(two / "02-dpo" / "model")
    proc = alignkit(*ARGS, runs["cache"], "launcher.num_processes=2", f"hydra.run.dir={two}")
    assert "resuming stage 'dpo' at step 2" in proc.stderr
    assert "resuming stage 'sft'" not in proc.stderr, "the finished SFT stage is skipped"
    resumed = weights(two, "02-dpo")
    for key in straight:
        assert torch.allclose(straight[key], resumed[key], atol=1e-6), key
    assert [(stage, step) for stage, step, _ in losses(two)][-2:] == [("dpo", 3), ("dpo", 4)]


# -- RL: rollouts split across processes ----------------------------------------------------------

DEMO_PROMPTS = Path(__file__).parents[2] / "plugins" / "data" / "demo" / "prompts.jsonl"
RL_ARGS = ["model=tiny-random", "logger=none", "data=files", f"data.prompts={DEMO_PROMPTS}",
           "preference_model=rule", "preference_model.fn=alignkit.plugins.rules.demo:concise",
           "trainer.batch_size=8", "trainer.max_length=64", "trainer.progress=false", "trainer.max_steps=3",
           "trainer.checkpoint_every=0", "trainer.warmup_ratio=0", "optimizer.trainer.learning_rate=3e-3",
           # each process samples its 4 responses as one chunk, the chunk one process samples with the same seed
           "optimizer.max_new_tokens=8", "optimizer.generation_batch_size=4", "optimizer.eval_prompts=0",
           "evaluate.num_prompts=2", "evaluate.max_new_tokens=8", "evaluate.safety_prompts=0",
           "evaluate.sycophancy_prompts=0", "evaluate.report=false"]


SCORED_BY = """
import os

from alignkit.plugins.rules import demo


def concise(prompt, response):
    \"\"\"The demo rule, noting which process scored (tests the reward model's placement).\"\"\"
    with open(os.environ["ALIGNKIT_TEST_SCORED_BY"], "a") as log:
        log.write(os.environ.get("RANK", "-") + "\\n")
    return demo.concise(prompt, response)
"""


def rl_steps(run, stage):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["stage"] == stage and "reward/mean" in r]


@pytest.mark.parametrize("method, extra", [
    ("grpo", ["optimizer.samples_per_prompt=4"]),
    # one copy of the reward and reference models, on the main process, scoring every process's rollouts
    ("grpo", ["optimizer.samples_per_prompt=4", "optimizer.reward_placement=rank0",
              "optimizer.reference_placement=rank0"]),
    ("ppo", ["optimizer.ppo_epochs=2", "optimizer.whiten_advantages=true", "optimizer.reward_normalize=true"]),
    # pairs per process, the DPO loss averaged over every process's pairs
    ("online_dpo", ["optimizer.samples_per_prompt=4", "optimizer.trainer.learning_rate=1e-3"]),
])
def test_two_processes_split_the_rollouts_and_train_like_one(method, extra, tmp_path, monkeypatch):
    """Each of 2 processes samples half of every step's batch; rewards, advantages and the loss
    normalisation see the whole batch, so the run matches one process sampling all of it. With
    ``reward_placement=rank0`` only the main process scores (every process's responses)."""
    from alignkit.core.pipeline import run_pipeline
    from alignkit.core.registry import Registry
    from alignkit.core.testing import compose

    (tmp_path / "scored_by.py").write_text(SCORED_BY)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ALIGNKIT_TEST_SCORED_BY", str(tmp_path / "ranks.txt"))
    args = [f"pipeline={method}", *RL_ARGS, *extra, "preference_model.fn=scored_by:concise"]
    two, one = tmp_path / "two", tmp_path / "one"
    alignkit(*args, "launcher.num_processes=2", f"hydra.run.dir={two}")
    ranks = set((tmp_path / "ranks.txt").read_text().split())
    assert ranks == ({"0"} if "optimizer.reward_placement=rank0" in extra else {"0", "1"}), ranks
    run_pipeline(compose(args), one)

    a, b = rl_steps(one, method), rl_steps(two, method)
    assert [r["step"] for r in b] == [1, 2, 3], "each step logged once, by the main process"
    for x, y in zip(a, b):  # the same rollouts and scores, the whole batch's statistics
        for key in ("reward/mean", "reward/std", "rollout/response_length_mean", "rollout/kl"):
            assert y[key] == pytest.approx(x[key], rel=1e-4, abs=1e-5), (key, x["step"])
    assert [r["rollout/responses_per_process"] for r in a + b] == [8] * 3 + [4] * 3, "the batch was split"
    stage = f"02-{method}"
    initial = Registry().load_model(_spec(compose(args)), "policy").model.state_dict()
    w1, w2 = weights(one, stage), weights(two, stage)
    moved = max((w1[k] - initial[k]).abs().max().item() for k in w1 if k in initial)
    apart = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    assert moved > 1e-3, f"training barely moved the weights ({moved}); the check would be empty"
    # Adam turns float-rounding differences of near-zero gradients (the all-reduce sums in
    # another order) into steps of up to lr; PPO's clipped value loss adds discrete flips. A
    # run that trained on half the batch lands a good fraction of `moved` away.
    assert apart < max(1e-4, 0.05 * moved), f"2 processes differ from 1 by {apart} (weights moved {moved})"


TIES_ON_RANK_1 = """
import os


def variety_unless_rank_1(prompt, response):
    \"\"\"Distinct characters (answers rarely tie) on rank 0; one score for everything on rank 1.\"\"\"
    return 0.5 if os.environ.get("RANK") == "1" else float(len(set(response)))
"""


def test_online_dpo_runs_when_one_process_has_no_pair(tmp_path, monkeypatch):
    """Rank 1's answers all tie, so it trains on a zero-weight stand-in pair while rank 0 trains on
    its own: both still make the same collective calls, and only rank 0's pair counts."""
    (tmp_path / "ties_on_rank_1.py").write_text(TIES_ON_RANK_1)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    run = tmp_path / "two"
    alignkit("pipeline=online_dpo", *RL_ARGS, "optimizer.samples_per_prompt=4", "trainer.max_steps=2",
             "preference_model.fn=ties_on_rank_1:variety_unless_rank_1", "launcher.num_processes=2",
             f"hydra.run.dir={run}")
    steps = rl_steps(run, "online_dpo")
    assert [s["pairs/trained"] for s in steps] == [1, 1], "one pair a step: rank 0's"
    assert all(s["update/optimizer_steps"] == 1 and "rewards/accuracy" in s for s in steps)
