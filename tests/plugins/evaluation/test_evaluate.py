"""The evaluate stage on tiny-random, ``alignkit evaluate`` on a finished run, and ``alignkit report``
on a real four-run multirun."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.core import FeedbackProviderEntry, Judgement, hookimpl
from alignkit.plugins.evaluation import metrics as M

DEMO = Path(__file__).parents[3] / "plugins" / "data" / "demo"
RULES = "def words(prompt, response):\n    return float(len(response.split()))\n"


class LongerWins:
    """A feedback provider for the test: the longer response wins, equal lengths tie."""

    def judge(self, prompts, a, b):
        out = []
        for x, y in zip(a, b):
            preferred = "a" if len(x) > len(y) else "b" if len(y) > len(x) else "tie"
            out.append(Judgement(preferred=preferred, probability=0.5, provider="longer"))
        return out


class LongerPlugin:
    @hookimpl
    def alignkit_feedback_providers(self):
        yield FeedbackProviderEntry(name="longer", factory=lambda cfg, ctx: LongerWins(), description="test")


def summary(path):
    return json.loads((Path(path) / "summary.json").read_text())


@pytest.mark.slow  # a whole pipeline on the tiny model (over 3 s)
def test_evaluate_stage_ends_the_dpo_pipeline(run_alignkit, plugin_manager, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="alignkit")
    (tmp_path / "evalrules.py").write_text(RULES)
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin_manager.register(LongerPlugin(), name="test-longer")
    rd = run_alignkit("pipeline=dpo", "optimizer.kl_prompts=0", "optimizer.max_eval_pairs=4",
                      f"optimizer.cache_dir={tmp_path / 'cache'}", "evaluate.scorers=['evalrules:words']",
                      "+feedback.name=longer")
    stage = summary(rd.path)["stages"]["evaluate"]
    assert stage["status"] == "completed"
    assert stage["artifacts"] == {"evaluation": "03-evaluate/results.json", "report": "report.md"}
    m = stage["metrics"]
    results = json.loads((rd.path / "03-evaluate" / "results.json").read_text())
    # the reference is the model DPO started from: the SFT stage's model
    assert results["policy"].endswith("02-dpo/model") and results["reference"].endswith("01-sft/model")
    samples = [json.loads(x) for x in (rd.path / "03-evaluate" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == m["eval/prompts"] == 4
    # metrics recomputed from the written samples agree with the stage's
    pol = [s["policy"] for s in samples]
    ref = [s["reference"] for s in samples]
    assert m["diversity/distinct_2_policy"] == pytest.approx(M.distinct_n(pol, 2))
    assert m["reward/words/policy_mean"] == pytest.approx(sum(len(t.split()) for t in pol) / 4)
    assert m["reward/words/reference_mean"] == pytest.approx(sum(len(t.split()) for t in ref) / 4)
    assert m["kl/per_sequence"] == pytest.approx(sum(s["kl"] for s in samples) / 4)
    assert m["length/policy_mean"] == pytest.approx(sum(s["policy_tokens"] for s in samples) / 4)
    # win rate from the "longer" judge, ties apart, whatever order the pairs were shown in
    wins = sum(len(p) > len(r) for p, r in zip(pol, ref))
    ties = sum(len(p) == len(r) for p, r in zip(pol, ref))
    assert (m["win/n"], m["win/wins"], m["win/ties"]) == (4, wins, ties)
    for key in ["entropy/policy", "diversity/self_bleu_reference", "safety/refusal_harmful_policy",
                "safety/over_refusal_reference", "sycophancy/policy", "reward/words/verbosity_warning"]:
        assert key in m, key
    records = [json.loads(x) for x in (rd.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["stage"] == "evaluate"] == [1]
    report = (rd.path / "report.md").read_text()
    assert "| reward `words` (mean) |" in report and "win rate over reference" in report
    for image in ("training.png", "length_hist.png", "reward_vs_kl.png"):
        assert f"(plots/{image})" in report and (rd.path / "plots" / image).stat().st_size > 1000, image
    # the sampling of each model is reported (core/progress.py): 4 held-out + 2 safety + 2 sycophancy prompts
    messages = [r.getMessage() for r in caplog.records]
    for model in ("policy", "reference"):
        assert any(m.startswith(f"evaluate: {model}: 8 samples, ") for m in messages), model


def alignkit(*args, env=None):
    exe = Path(sys.executable).parent / "alignkit"
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", WANDB_MODE="disabled", **(env or {})))
    assert proc.returncode == 0, f"alignkit {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow  # a multirun of the alignkit command
def test_multirun_then_report_compares_every_run(tmp_path):
    from alignkit.core.testing import FAST_OVERRIDES

    (tmp_path / "evalrules.py").write_text(RULES)
    env = {"PYTHONPATH": str(tmp_path)}
    sweep = tmp_path / "sweep"
    alignkit("-m", "pipeline=dpo", *FAST_OVERRIDES, "data=files",
             f"data.preferences={DEMO / 'preferences.jsonl'}", f"data.prompts={DEMO / 'prompts.jsonl'}",
             "optimizer.kl_prompts=0", "optimizer.max_eval_pairs=4", f"optimizer.cache_dir={tmp_path / 'cache'}",
             "evaluate.scorers=['evalrules:words']", "evaluate.report=false",
             "optimizer.beta=0.1,0.5", "optimizer.trainer.learning_rate=0.0001,0.01",
             f"hydra.sweep.dir={sweep}", env=env)
    runs = sorted(p.name for p in sweep.iterdir() if (p / "summary.json").exists())
    assert runs == ["0", "1", "2", "3"]
    for run in runs:
        results = json.loads((sweep / run / "03-evaluate" / "results.json").read_text())
        assert results["reference"] == "tiny-random", "one training stage: the reference is the run's model="

    out = alignkit("report", str(sweep), "--kl-budget", "1e9", env=env).stdout
    header = next(line for line in out.splitlines() if line.startswith("| run |"))
    assert "optimizer.beta" in header and "optimizer.trainer.learning_rate" in header
    main_table = out.split(header + "\n", 1)[1].split("\n\n", 1)[0]  # the stage tables follow it
    rows = [line for line in main_table.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows] == runs
    assert "Best run with KL ≤ 1e+09" in out
    assert (sweep / "frontier.png").stat().st_size > 1000

    from alignkit.plugins.evaluation.report import comparison

    c = comparison([sweep])
    assert c["key"] == "reward/words/policy_mean"
    assert sorted(p["run"] for p in c["points"]) == runs, "one frontier point per run"
    assert len({round(p["kl"], 9) for p in c["points"]}) > 1, "the swept learning rate moved the policy"
    assert {p["label"] for p in c["points"]} == {f"beta={b}, learning_rate={lr}"
                                                 for b in ("0.1", "0.5") for lr in ("0.0001", "0.01")}

    # `alignkit evaluate` on a finished run, against the policy itself: KL 0, every pair a tie.
    from alignkit.plugins.evaluation.cli import evaluate_command

    run0 = sweep / "0"
    sys.path.insert(0, str(tmp_path))
    try:
        assert evaluate_command([str(run0), f"evaluate.reference={run0 / '02-dpo' / 'model'}",
                                 "evaluate.safety_prompts=0", "evaluate.sycophancy_prompts=0"]) == 0
    finally:
        sys.path.remove(str(tmp_path))
    m = summary(run0)["stages"]["evaluate"]["metrics"]
    assert m["kl/per_sequence"] == 0.0
    assert m["reward/words/gain"] == 0.0 and "safety/prompts" not in m
    assert summary(run0)["status"] == "completed"
