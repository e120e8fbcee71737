"""A Hydra multirun (`alignkit -m`) goes on past a failed job, records it, names the sweep folder
and exits non-zero at the end. The jobs run a one-step stand-in optimizer (the checked-in fake
plugin), so the sweep costs little more than starting the command."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # multiruns of the alignkit command in subprocesses

FAKE_PLUGIN = Path(__file__).parents[1] / "fixtures" / "fake_plugin"
# one stage of the fake plugin's optimizer: no model is trained
FAKE_PIPELINE = ["model=tiny-random", "logger=none", "optimizer=fake_opt",
                 "pipeline.stages=[{name:fake,optimizer:fake_opt}]"]


def alignkit(*args, cwd=None):
    exe = Path(sys.executable).parent / "alignkit"
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(FAKE_PLUGIN), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_a_failed_job_does_not_end_the_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    # job 0: a value the optimizer's schema refuses (a float); job 1 runs
    proc = alignkit("-m", *FAKE_PIPELINE, "optimizer.scale=bogus,3", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 2, proc.stderr[-3000:]

    failed = json.loads((sweep / "0" / "summary.json").read_text())
    assert failed["status"] == "failed" and "bogus" in failed["error"]
    done = json.loads((sweep / "1" / "summary.json").read_text())
    assert done["status"] == "completed" and done["stages"]["fake"]["metrics"]["scale"] == 3.0

    record = json.loads((sweep / "sweep.json").read_text())
    assert record["status"] == "failed"
    assert [(j["num"], j["dir"], j["status"]) for j in record["jobs"]] == [(0, "0", "failed"), (1, "1", "completed")]
    assert "optimizer.scale=bogus" in record["jobs"][0]["overrides"] and "bogus" in record["jobs"][0]["error"]

    assert f"alignkit: sweep directory: {sweep} (2 jobs: 1 failed, 1 completed)" in proc.stdout
    assert "job 0 (optimizer.scale=bogus) failed" in proc.stdout
    assert f"report with: alignkit report {sweep}" in proc.stdout
    assert "Traceback" not in proc.stderr


# pipeline=rlaif_dpo on tiny-random, every stage sized down; the demo data declares its arithmetic task,
# so the evaluate stage scores both runs with the same rule whatever labelled their pairs
RLAIF_DPO_FAST = [
    "pipeline=rlaif_dpo", "model=tiny-random", "logger=none", "trainer.max_steps=2", "trainer.batch_size=2",
    "trainer.max_length=96", "trainer.progress=false", "trainer.checkpoint_every=0",
    "critique_revise.prompts=2", "critique_revise.eval_prompts=0", "critique_revise.max_new_tokens=6",
    "critic.critique_max_new_tokens=6", "critic.revision_max_new_tokens=6",
    "label.prompts=4", "label.eval_prompts=2", "label.max_new_tokens=8", "label.calibration.enabled=false",
    "label.keep_ties=true",  # the arithmetic rule ties every pair of a random model's answers
    "optimizer.max_eval_pairs=2", "optimizer.kl_prompts=0", "evaluate.num_prompts=2", "evaluate.max_new_tokens=8",
    "evaluate.safety_prompts=0", "evaluate.sycophancy_prompts=0", "evaluate.embedding=false",
]


def test_a_sweep_over_feedback_sources_of_rlaif_dpo_yields_one_comparison(tmp_path, monkeypatch):
    """The issue's acceptance run: `alignkit -m pipeline=rlaif_dpo feedback=rule,constitution` completes both
    runs (the critic is the constitution in both), and `alignkit report` compares them in one report."""
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "cache"))
    sweep = tmp_path / "sweep"
    proc = alignkit("-m", *RLAIF_DPO_FAST, "feedback=rule,constitution", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for job, labeler in (("0", "rule"), ("1", "constitution")):
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["status"] == "completed", summary
        assert list(summary["stages"])[-1] == "evaluate" and summary["stages"]["evaluate"]["status"] == "completed"
        assert "reward/arithmetic_graded/policy_mean" in summary["stages"]["evaluate"]["metrics"]
        judged = [json.loads(x) for x in (sweep / job / "04-label" / "judgements.jsonl").read_text().splitlines()]
        assert {j["provider"] for j in judged} == {labeler}

    report = alignkit("report", str(sweep), cwd=tmp_path)
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    text = (sweep / "comparison.md").read_text()
    assert "2 runs; ranked by `reward/arithmetic_correct/policy_mean`" in text  # the demo task's scorers
    assert "| 0 | completed | rule |" in text and "| 1 | completed | constitution |" in text  # the swept column
    assert "Win rates are not comparable across judges" in text  # each run's win rate is its own labeler's
    assert "- J1 = feedback `rule` (fn=alignkit.plugins.rules.demo:arithmetic_graded): runs `0`" in text
    assert "- J2 = feedback `constitution` (model=the policy of run 1, backend=local, constitution=default)" in text
