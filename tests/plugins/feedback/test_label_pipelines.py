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


@pytest.mark.slow  # a whole pipeline on the tiny model (over 3 s)
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


@pytest.mark.slow  # a whole pipeline on the tiny model (over 3 s)
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


def critic_fast(tmp_path, prompts=3, eval_prompts=1, rounds=2):
    """The critic (critic=constitution: the policy itself on tiny-random) and its stage, sized for tests."""
    return (f"critic.cache_dir={tmp_path / 'critic'}", "critic.max_length=384", "critic.critique_max_new_tokens=6",
            "critic.revision_max_new_tokens=6", f"critique_revise.prompts={prompts}",
            f"critique_revise.eval_prompts={eval_prompts}", "critique_revise.max_new_tokens=6",
            f"critique_revise.rounds={rounds}")


@pytest.mark.slow  # a whole pipeline on the tiny model (over 3 s)
def test_rlaif_dpo_pipeline_critiques_revises_and_trains(run_alignkit, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="alignkit")
    rd = run_alignkit("pipeline=rlaif_dpo", *NO_SFT_DATA, f"feedback.cache_dir={tmp_path / 'c'}", "feedback.max_length=384",
                      *critic_fast(tmp_path), *LABEL_FAST, *DPO_FAST, f"optimizer.cache_dir={tmp_path / 'ref'}")
    stages = summary(rd)
    assert [s["status"] for s in stages.values()] == ["skipped"] + ["completed"] * 5
    assert list(stages)[-1] == "evaluate"
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


# Before the critic had its own config group, every one of these stopped at critique_revise: "stage
# 'critique_revise' critiques and revises with the feedback provider, and feedback 'rule' cannot".
LABELERS = {
    "rule": ("feedback=rule", "label.keep_ties=true"),  # the demo's arithmetic rule: a random model ties
    "dataset": ("feedback=dataset",),
    "reward_model": ("feedback=reward_model", "preference_model=rule",
                     "preference_model.fn=alignkit.plugins.rules.demo:concise"),
}


@pytest.mark.parametrize("labeler", sorted(LABELERS))
@pytest.mark.slow  # a whole pipeline on the tiny model (over 3 s)
def test_rlaif_dpo_takes_any_labeler_apart_from_its_critic(run_alignkit, tmp_path, labeler):
    rd = run_alignkit("pipeline=rlaif_dpo", *NO_SFT_DATA, *LABELERS[labeler], *critic_fast(tmp_path, 2, 0, 1),
                      *LABEL_FAST, *DPO_FAST, f"optimizer.cache_dir={tmp_path / 'ref'}", "pipeline.skip=[evaluate]")
    stages = summary(rd)
    assert [s["status"] for s in stages.values()] == ["skipped"] + ["completed"] * 4 + ["skipped"]
    kept = jsonl(rd.path / "02-critique_revise/critiques.jsonl")
    assert len(kept) == 2 and all(r["principle"] for k in kept for r in k["rounds"]), "the constitution critiqued"
    judged = jsonl(rd.path / "04-label/judgements.jsonl") if labeler != "dataset" else []
    assert all(j["provider"] == labeler for j in judged)
    assert stages["dpo"]["metrics"]["data/train_pairs"] == stages["label"]["metrics"]["label/train_pairs"] > 0


@pytest.mark.slow  # a whole pipeline through the CLI
def test_rlaif_dpo_with_people_as_labelers_waits_after_the_critique(tmp_path):
    """feedback=human: the critic revises, SFT trains on the revisions, then the run stops at the label
    stage with exit status 75 and the command that resumes it."""
    import subprocess
    import sys

    from alignkit.core.errors import WaitingForFeedback
    from alignkit.core.testing import FAST_OVERRIDES

    run_dir = tmp_path / "run"
    args = ["pipeline=rlaif_dpo", *FAST_OVERRIDES, *NO_SFT_DATA, "feedback=human",
            f"feedback.db=sqlite:///{tmp_path / 'labels.db'}", *critic_fast(tmp_path, 2, 0, 1), *LABEL_FAST,
            "label.calibration.enabled=false", f"hydra.run.dir={run_dir}"]
    done = subprocess.run([sys.executable, "-m", "alignkit.core.cli", *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)
    assert done.returncode == WaitingForFeedback.EXIT_WAITING == 75, done.stdout[-3000:] + done.stderr[-3000:]
    stages = json.loads((run_dir / "summary.json").read_text())["stages"]
    assert [stages[s]["status"] for s in ("critique_revise", "sft_revisions", "label")] == \
        ["completed", "completed", "waiting"]
    assert "resume with: alignkit pipeline=rlaif_dpo" in done.stdout and f"hydra.run.dir={run_dir}" in done.stdout


def test_critique_revise_needs_a_critic_that_can_revise(stage_ctx, registry):
    from omegaconf import OmegaConf

    from alignkit.core import ConfigError
    from alignkit.core.preflight import preflight
    from alignkit.core.testing import compose
    from alignkit.plugins.feedback.critique_revise import critic

    without = compose(["pipeline=rlaif_dpo", "model=tiny-random", "~critic"], registry)
    with pytest.raises(ConfigError, match=r"stage 'critique_revise' needs a critic: add critic=<one of constitution>"):
        preflight(without, registry)
    ctx = stage_ctx("pipeline=rlaif_dpo", "feedback=rule", name="critique_revise")
    ctx.run.cfg.critic = OmegaConf.create({"name": "rule", "fn": "alignkit.plugins.rules.demo:concise"})
    with pytest.raises(ConfigError, match="critic 'rule' cannot .*; use critic=constitution"):
        critic(ctx)


@pytest.mark.slow  # a whole pipeline on the tiny model (over 3 s)
def test_the_bare_command_runs_the_preference_pipeline_with_the_graded_demo_rule(run_alignkit, compose_config, tmp_path):
    """`alignkit` with no arguments: SFT -> label (graded arithmetic rule) -> DPO -> evaluate."""
    cfg = compose_config()
    assert cfg.pipeline.name == "preference" and cfg.model.name_or_path == "smollm2-135m-instruct"
    assert [s.name for s in cfg.pipeline.stages] == ["sft", "label", "dpo", "evaluate"]
    assert cfg.feedback.name == "rule" and cfg.feedback.fn == "alignkit.plugins.rules.demo:arithmetic_graded"
    # the pipeline uses the data's task (core/task.py); the demo data declares its arithmetic rule
    assert cfg.evaluate.prompt_filter == "task" and list(cfg.evaluate.scorers) == ["task"]
    from alignkit.core.task import resolve_task
    from alignkit.plugins.data.plugin import demo_source

    evaluate = resolve_task(cfg.evaluate, lambda: demo_source(cfg.data))
    assert evaluate.prompt_filter == "alignkit.plugins.rules.demo:verifiable"
    assert "alignkit.plugins.rules.demo:arithmetic_correct" in evaluate.scorers

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


@pytest.mark.slow  # a whole pipeline on the tiny model (over 3 s)
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


def test_the_critic_group_is_listed_checked_and_planned(registry):
    import io

    from alignkit.core.preflight import preflight
    from alignkit.core.testing import compose
    from alignkit.core.usage import print_usage

    out = io.StringIO()
    print_usage(registry, out)
    assert any(line.split() == ["critic", "constitution"] for line in out.getvalue().splitlines())
    plan = preflight(compose(["pipeline=rlaif_dpo", "model=tiny-random", "feedback=rule"], registry), registry)
    assert plan.components["critic"].startswith("constitution") and plan.components["feedback"].startswith("rule")
    with pytest.raises(Exception, match=r"critic 'constitution' has no option 'modle' \(did you mean 'model'\?\)"):
        preflight(compose(["pipeline=rlaif_dpo", "model=tiny-random", "+critic.modle=x"], registry), registry)
