"""The label and critique_revise stages inside whole pipelines on the tiny model."""

import json
import logging
import re
from pathlib import Path

import pytest

DPO_FAST = ("optimizer.max_eval_pairs=4", "optimizer.kl_prompts=0")
DEMO = Path(__file__).parents[3] / "plugins" / "data" / "demo"
NO_SFT_DATA = ("data=files", f"data.prompts={DEMO / 'prompts.jsonl'}", f"data.preferences={DEMO / 'preferences.jsonl'}")
LABEL_FAST = ("label.prompts=6", "label.eval_prompts=2", "label.max_new_tokens=8", "label.calibration.pairs=6")


def summary(rd):
    return json.loads((Path(rd.path) / "summary.json").read_text())["stages"]


def jsonl(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def test_label_stage_writes_preferences_that_dpo_trains_on(run_alignkit, rules_module, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="alignkit")
    rd = run_alignkit("pipeline=preference", *NO_SFT_DATA, "feedback.fn=fbtest_rules:longer", *LABEL_FAST, *DPO_FAST,
                      f"optimizer.cache_dir={tmp_path / 'ref'}")
    stages = summary(rd)
    label, dpo = stages["label"], stages["dpo"]
    assert stages["sft"]["status"] == "skipped"
    assert label["artifacts"] == {"preferences": "02-label/preferences"}
    train = jsonl(rd.path / "02-label/preferences/train.jsonl")
    assert len(train) == label["metrics"]["label/train_pairs"] > 0
    for row in train:
        assert set(row) == {"prompt", "chosen", "rejected", "strength", "source"}
        assert len(row["chosen"]) > len(row["rejected"]) and row["strength"] == 1.0
        assert row["source"] == "alignkit-label/rule"
    judged = jsonl(rd.path / "02-label/judgements.jsonl")
    assert {"prompt", "response_a", "response_b", "preferred", "probability", "provider", "principle",
            "rationale", "split"} <= set(judged[0])
    assert (rd.path / "02-label/calibration.json").exists() and "calibration/accuracy" in label["metrics"]
    assert dpo["status"] == "completed"
    assert dpo["metrics"]["data/train_pairs"] == len(train), "DPO trained on the labelled pairs, not the demo's"
    # the sampling is reported (core/progress.py): pipeline=preference samples 8 responses a prompt,
    # 6 train prompts x 8 = 48 and 2 eval prompts x 8 = 16
    messages = [r.getMessage() for r in caplog.records]
    for split, n in (("train", 48), ("eval", 16)):
        assert any(re.fullmatch(rf"label: sampling {split}: {n} samples, \d+ new tokens in .* tokens/s\)", m)
                   for m in messages), split


def test_label_stage_rerun_reuses_sampled_pairs_and_cached_judgements(run_alignkit, rules_module, tmp_path):
    args = ("pipeline=preference", "pipeline.stages=[{name: label, optimizer: label, config: ${label}}]",
            "feedback.fn=fbtest_rules:longer", "feedback.cache=true", f"feedback.cache_dir={tmp_path / 'c'}",
            *LABEL_FAST, "label.calibration.enabled=false", "label.samples=4", "label.prompt_filter=fbtest_rules:has_digits")
    first = run_alignkit(*args, run_dir=tmp_path / "one")
    before = rules_module.CALLS["n"]
    (first.path / "01-label/DONE").unlink()  # as if the stage had been stopped before it finished
    second = run_alignkit(*args, run_dir=tmp_path / "one")
    assert rules_module.CALLS["n"] == before, "the rerun asked the rule nothing"
    assert summary(second)["label"]["metrics"]["label/cache_misses"] == 0
    pairs = jsonl(first.path / "01-label/pairs-train.jsonl")
    assert len(pairs) == 12, "6 prompts x 4 samples = 12 pairs"
    assert all(any(ch.isdigit() for ch in p["prompt"][-1]["content"]) for p in pairs), "prompt_filter applied"


def test_dataset_feedback_passes_the_data_pairs_through(run_alignkit):
    rd = run_alignkit("pipeline=preference", "pipeline.stages=[{name: label, optimizer: label, config: ${label}}]",
                      "feedback=dataset", "label.prompts=10", "label.eval_prompts=3")
    label = summary(rd)["label"]
    assert label["metrics"]["label/train_pairs"] == 10 and label["metrics"]["calibration/accuracy"] == 1.0
    rows = jsonl(rd.path / "01-label/preferences/train.jsonl")
    assert rows[0]["source"].startswith("alignkit-demo/")


def test_rlaif_dpo_pipeline_critiques_revises_and_trains(run_alignkit, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="alignkit")
    rd = run_alignkit("pipeline=rlaif_dpo", *NO_SFT_DATA, f"feedback.cache_dir={tmp_path / 'c'}", "feedback.max_length=384",
                      "feedback.critique_max_new_tokens=6", "feedback.revision_max_new_tokens=6",
                      "critique_revise.prompts=3", "critique_revise.eval_prompts=1", "critique_revise.max_new_tokens=6",
                      "critique_revise.rounds=2", *LABEL_FAST, *DPO_FAST, f"optimizer.cache_dir={tmp_path / 'ref'}")
    stages = summary(rd)
    assert [s["status"] for s in stages.values()] == ["skipped"] + ["completed"] * 4
    kept = jsonl(rd.path / "02-critique_revise/critiques.jsonl")
    assert len(kept) == 4 and all(len(k["rounds"]) == 2 for k in kept)
    ids = {"helpful", "harmless", "honest", "not_sycophantic", "concise"}
    assert all(r["principle"] in ids and "critique" in r and "revision" in r for k in kept for r in k["rounds"])
    sft_rows = jsonl(rd.path / "02-critique_revise/sft/train.jsonl")
    assert [r["messages"][-1]["content"] for r in sft_rows] == [k["final"] for k in kept if k["split"] == "train"]
    assert stages["sft_revisions"]["metrics"]["data/train_examples"] == 3, "SFT trained on the revisions"
    judged = jsonl(rd.path / "04-label/judgements.jsonl")
    assert all(j["principle"] in ids and j["provider"] == "constitution" and j["orders"] for j in judged)
    assert "label/position_consistency" in stages["label"]["metrics"]
    assert stages["dpo"]["metrics"]["data/train_pairs"] == stages["label"]["metrics"]["label/train_pairs"]
    # progress is reported (core/progress.py): 4 prompts x (1 sample + 2 rounds x (critique + revision)) = 20
    # generations; the local judge's calls at DEBUG
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("critique_revise: 20 gens, ") for m in messages), messages
    assert any(m.startswith("judge generate: ") for m in messages)
    assert any(m.startswith("judge choice: ") for m in messages)


def test_critique_revise_needs_a_provider_that_can_revise(run_alignkit):
    from alignkit.core import ConfigError

    with pytest.raises(ConfigError, match="use feedback=constitution"):
        run_alignkit("pipeline=rlaif_dpo", "feedback=rule", "critique_revise.prompts=1")


def test_the_bare_command_runs_the_preference_pipeline_with_the_graded_demo_rule(run_alignkit, compose_config, tmp_path):
    """`alignkit` with no arguments: SFT -> label (graded arithmetic rule) -> DPO -> evaluate."""
    cfg = compose_config()
    assert cfg.pipeline.name == "preference" and cfg.model.name_or_path == "smollm2-135m-instruct"
    assert [s.name for s in cfg.pipeline.stages] == ["sft", "label", "dpo", "evaluate"]
    assert cfg.feedback.name == "rule" and cfg.feedback.fn == "alignkit.plugins.rules.demo:arithmetic_graded"
    assert cfg.evaluate.prompt_filter == "alignkit.plugins.rules.demo:verifiable"
    assert "alignkit.plugins.rules.demo:arithmetic_correct" in cfg.evaluate.scorers

    # the same defaults on tiny-random, sizes made smaller; a random model writes no numbers, so
    # every pair is a tie, kept here as a strength-0.5 pair so that DPO has something to run on
    rd = run_alignkit(*LABEL_FAST, *DPO_FAST, "label.calibration.enabled=false", "label.keep_ties=true",
                      f"optimizer.cache_dir={tmp_path / 'ref'}")
    stages = summary(rd)
    assert list(stages) == ["sft", "label", "dpo", "evaluate"]
    assert all(s["status"] == "completed" for s in stages.values())
    judged = jsonl(rd.path / "02-label/judgements.jsonl")
    from alignkit.plugins.rules.demo import verifiable

    assert judged and all(verifiable(j["prompt"]) for j in judged), "only questions the rule can check are labelled"
    assert all(j["annotator"] == "alignkit.plugins.rules.demo:arithmetic_graded" for j in judged)
    m = stages["evaluate"]["metrics"]
    assert m["eval/samples"] == cfg.evaluate.samples * m["eval/prompts"] and "reward/arithmetic_graded/gain_stderr" in m


def test_evaluate_keeps_the_datas_held_out_prompts_when_labelling_held_none_out(run_alignkit, rules_module,
                                                                                 tmp_path):
    """label.eval_prompts=0 writes a preferences artifact with no eval rows; evaluate still
    measures on the configured data's held-out preference prompts instead of losing them."""
    from alignkit.core.testing import compose

    rd = run_alignkit("pipeline=preference", *NO_SFT_DATA, "feedback.fn=fbtest_rules:longer", *LABEL_FAST,
                      "label.eval_prompts=0", "label.calibration.enabled=false", *DPO_FAST,
                      "evaluate.num_prompts=40", "evaluate.prompt_filter=null",
                      f"optimizer.cache_dir={tmp_path / 'ref'}")
    assert not (rd.path / "02-label/preferences/eval.jsonl").exists() or \
        not (rd.path / "02-label/preferences/eval.jsonl").read_text().strip()
    measured = [json.dumps(r["prompt"], sort_keys=True) for r in jsonl(rd.path / "04-evaluate/samples.jsonl")]
    from alignkit.core.registry import Registry
    from alignkit.core.pipeline import RunContext
    from alignkit.core.rundir import RunDir

    cfg = compose(["pipeline=preference", *NO_SFT_DATA, "model=tiny-random"])
    data = RunContext(cfg, Registry(), RunDir(tmp_path / "probe", pipeline="preference")).data
    held_out = {json.dumps([{"role": m["role"], "content": m["content"]} for m in row["prompt"]], sort_keys=True)
                for row in data.preferences("eval")}
    assert held_out & set(measured), "the data's held-out preference prompts are among those evaluated"
