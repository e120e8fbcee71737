"""``feedback=dataset``: the label stage hands on every labelled pair of the data (a cap only
when ``label.prompts`` is set, and then said), and the evaluate stage does not ask it to judge
answers the data does not hold."""

import json
import logging

import pytest

from alignkit.plugins.evaluation.evaluate import EvaluateConfig, Evaluator

LABEL_ONLY = "pipeline.stages=[{name: label, optimizer: label, config: ${label}}]"


def summary(rd):
    return json.loads((rd.path / "summary.json").read_text())["stages"]


def test_label_stage_keeps_every_pair_of_the_data(run_alignkit):
    # the demo data: 400 pairs, 10% (40) held out; the old default label.prompts=64 kept 64 and 16
    rd = run_alignkit("pipeline=preference", LABEL_ONLY, "feedback=dataset")
    metrics = summary(rd)["label"]["metrics"]
    assert metrics["label/train_pairs"] == 360 and metrics["label/eval_pairs"] == 40
    assert len((rd.path / "01-label/preferences/train.jsonl").read_text().splitlines()) == 360


def test_an_explicit_cap_is_logged(run_alignkit, caplog):
    with caplog.at_level(logging.INFO, logger="alignkit"):
        rd = run_alignkit("pipeline=preference", LABEL_ONLY, "feedback=dataset", "label.prompts=10")
    assert summary(rd)["label"]["metrics"]["label/train_pairs"] == 10
    assert summary(rd)["label"]["metrics"]["label/eval_pairs"] == 40
    assert "label: label.prompts=10 keeps the first 10 of the data's 360 train pairs" in caplog.messages


def test_win_rate_is_not_asked_of_the_dataset_provider(stage_context):
    ctx = stage_context("pipeline=preference", "feedback=dataset")
    results = {"warnings": []}
    prompts = [[{"role": "user", "content": "a question the data does not hold"}]]
    evaluator = Evaluator(EvaluateConfig(scorers=["alignkit.plugins.rules.demo:arithmetic_graded"]))
    assert evaluator._win_rate(ctx, prompts, ["new answer"], ["other answer"], 0, results) == {}
    assert results["warnings"] == [
        "no win rate: feedback=dataset only knows the labelled pairs in the data and cannot judge the new answers; "
        "the answers are compared by alignkit.plugins.rules.demo:arithmetic_graded instead "
        "(evaluate.win_rate=false silences this)"]
    results = {"warnings": []}
    Evaluator(EvaluateConfig())._win_rate(ctx, prompts, ["new answer"], ["other answer"], 0, results)
    assert "nothing compares the answers: give a judge of new answers as preference_model=... or " \
           "evaluate.scorers=[package.module:function]" in results["warnings"][0]


@pytest.mark.slow  # a whole pipeline on the tiny model (over 3 s)
def test_preference_pipeline_with_dataset_feedback_completes(run_alignkit, tmp_path):
    """The documented run with the user's own (non-arithmetic) pairs: label -> DPO -> evaluate."""
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Tell me about topic {i}.", "chosen": f"Topic {i} is about {i}.",
                                         "rejected": "No."}) + "\n" for i in range(20)))
    rd = run_alignkit("pipeline=preference", "feedback=dataset", "data=files", f"data.preferences={pairs}",
                      "evaluate.prompt_filter=null", "evaluate.scorers=[]", "evaluate.num_prompts=2", "evaluate.samples=1",
                      "evaluate.safety_prompts=0", "evaluate.sycophancy_prompts=0", "evaluate.report=false",
                      "label.calibration.enabled=false", "optimizer.max_eval_pairs=2", "optimizer.kl_prompts=0",
                      f"optimizer.cache_dir={tmp_path / 'ref'}")
    stages = summary(rd)
    assert [s["status"] for s in stages.values()] == ["skipped", "completed", "completed", "completed"]
    assert stages["label"]["metrics"]["label/train_pairs"] == 18
    assert not any(key.startswith("win/") for key in stages["evaluate"]["metrics"])
    warnings = json.loads((rd.path / "04-evaluate/results.json").read_text())["warnings"]
    assert any(w.startswith("no win rate: feedback=dataset") for w in warnings)
