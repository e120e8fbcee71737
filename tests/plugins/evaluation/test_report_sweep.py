"""`alignkit report` on hand-made sweeps (no model): the ranking metric per pipeline, each training
stage's final metrics, the KL budget without a reward, counts vs rates, judges, failed jobs."""

import json

import pytest
import yaml

from alignkit.plugins.evaluation.cli import report_command
from alignkit.plugins.evaluation.plots import label_groups, pareto_front, point_tags
from alignkit.plugins.evaluation.report import compare_runs, comparison, evaluation_rows


def write_run(folder, overrides, stages, evaluation=None, status="completed", error=None, feedback=None,
              logged=(), summary=True):
    """A run directory as a pipeline leaves it: .hydra/, summary.json (``stages``: name -> final
    metrics; ``evaluation``: the evaluate stage's metrics), metrics.jsonl (``logged`` records)."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"feedback": feedback, "preference_model": None}))
    if logged:
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logged))
    if not summary:
        return
    record = {name: {"status": "completed", "metrics": metrics, "artifacts": {}} for name, metrics in stages.items()}
    if evaluation is not None:
        record["evaluate"] = {"status": "completed", "metrics": evaluation, "artifacts": {}}
    body = {"pipeline": "dpo", "status": status, "stages": record}
    if error:
        body["error"] = error
    (folder / "summary.json").write_text(json.dumps(body))


SFT = {"train/loss": 2.5, "eval/loss": 2.4, "train/step_seconds": 0.1, "stage_seconds": 9.0}


def dpo_sweep(root):
    """The sweep of issue #24: loss_type x beta, no reward scorer, KL ~0.003 per response."""
    cases = [("sigmoid", 0.1, 0.8, 0.68, 0.0031), ("sigmoid", 0.5, 0.8, 0.61, 0.0029),
             ("ipo", 0.1, 0.675, 24.9, 0.0030), ("ipo", 0.5, 0.7, 0.98, 0.0032)]
    for i, (loss_type, beta, accuracy, loss, kl) in enumerate(cases):
        dpo = {"train/loss": loss + 0.01, "train/rewards/accuracy": accuracy - 0.05, "eval/rewards/accuracy": accuracy,
               "eval/loss": loss, "eval/pairs": 40, "train/step_seconds": 0.5 + i, "stage_seconds": 12.0 + i}
        write_run(root / str(i), ["pipeline=dpo", f"optimizer.loss_type={loss_type}", f"optimizer.beta={beta}"],
                  {"sft": dict(SFT), "dpo": dpo}, {"kl/per_sequence": kl, "kl/per_token": kl / 48,
                                                   "eval/seconds": 3.0 + i})
    return root


def table_rows(text, first_cell):
    """The rows of the markdown table whose header starts with ``| first_cell |``, as lists of cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_cell} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_a_dpo_sweep_without_reward_ranks_by_held_out_accuracy_and_shows_each_stage(tmp_path):
    sweep = dpo_sweep(tmp_path / "sweep")
    path, text = compare_runs([sweep], kl_budget=5.0)
    assert ("4 runs; ranked by `dpo/eval/rewards/accuracy` (higher is better; the last training stage's "
            "held-out preference accuracy, as no run has a reward or a win rate)") in text
    main = table_rows(text, "run")
    assert main[0] == ["run", "status", "optimizer.beta", "optimizer.loss_type", "rank", "dpo/eval/rewards/accuracy",
                       "KL/resp", "KL/token"], "columns no run has a value for are left out"
    # accuracies 0.8, 0.8, 0.675, 0.7: two tie first, 0.7 is third, 0.675 fourth
    assert [(r[0], r[4], r[5]) for r in main[1:]] == [("0", "1", "0.8"), ("1", "1", "0.8"), ("2", "4", "0.675"),
                                                      ("3", "3", "0.7")]
    # the bug: no reward -> no frontier point -> "No run stays within the KL budget" although every KL is ~0.003
    assert "No run stays" not in text
    assert ("**Best run with KL ≤ 5 nats per response: `0`** (beta=0.1, loss_type=sigmoid): "
            "dpo/eval/rewards/accuracy = 0.8, KL = 0.0031.") in text
    dpo = table_rows(text, "metric")
    assert dpo[0] == ["metric", "`0`", "`1`", "`2`", "`3`"]
    assert dpo[1:] == [["`eval/rewards/accuracy`", "0.8", "0.8", "0.675", "0.7"],
                       ["`eval/loss`", "0.68", "0.61", "24.9", "0.98"],
                       ["`train/rewards/accuracy`", "0.75", "0.75", "0.625", "0.65"],
                       ["`train/loss`", "0.69", "0.62", "24.9", "0.99"]]
    assert "The same in every run: `eval/pairs` 40." in text
    assert "### Stage `sft`: final training and held-out metrics\n\nThe same in every run: `eval/loss` 2.4, " \
           "`train/loss` 2.5." in text, "sft did not differ: one line, no table"
    assert "seconds" not in text, "timings differ in every run and say nothing"
    assert path.read_text() == text and (sweep / "frontier.png").stat().st_size > 1000


def test_an_sft_sweep_ranks_by_held_out_loss_lowest_first(tmp_path):
    for i, loss in enumerate([2.0, 1.5, 1.75]):
        write_run(tmp_path / str(i), [f"trainer.learning_rate={i}e-5"], {"sft": {"eval/loss": loss}},
                  {"kl/per_sequence": 1.0 + i})
    c = comparison([tmp_path], kl_budget=2.5)
    assert (c["key"], c["higher_is_better"]) == ("sft/eval/loss", False)
    assert [r[3] for r in c["rows"]] == ["3", "1", "2"]
    assert c["best"]["run"] == "1", "the lowest loss, KL 2.0 within the budget of 2.5"
    assert comparison([tmp_path], kl_budget=1.9)["best"]["run"] == "0", "run 1's KL 2.0 is over 1.9"


def test_the_kl_budget_holds_runs_without_any_ranking_metric(tmp_path):
    for i, kl in enumerate([0.003, 0.004, 7.0]):
        write_run(tmp_path / str(i), [f"seed={i}"], {}, {"kl/per_sequence": kl})
    text = compare_runs([tmp_path], kl_budget=5.0)[1]
    assert "not ranked: no run has a reward" in text
    assert ("2 of 3 runs with a KL measurement stay within the KL budget of 5 nats per response "
            "(`0`, `1`); nothing ranks them.") in text
    text = compare_runs([tmp_path], kl_budget=0.001)[1]
    assert ("No run stays within the KL budget of 0.001 nats per response: the smallest KL is 0.003 (`0`)."
            in text)


def test_metric_by_name_and_an_unknown_one_refused_with_the_choices(tmp_path, capsys):
    sweep = dpo_sweep(tmp_path / "sweep")
    c = comparison([sweep], metric="eval/loss")
    assert (c["key"], c["higher_is_better"]) == ("dpo/eval/loss", False), "the last stage with that key"
    assert [r[4] for r in c["rows"]] == ["2", "1", "4", "3"]
    assert comparison([sweep], metric="sft/eval/loss")["key"] == "sft/eval/loss"
    assert comparison([sweep], metric="kl/per_sequence")["higher_is_better"] is False
    assert report_command([str(sweep), "--metric", "acuracy"]) == 2
    err = capsys.readouterr().err
    assert "alignkit report: error: --metric 'acuracy' is not a metric of these runs. Choose one of:" in err
    assert "  evaluate: kl/per_sequence, kl/per_token\n" in err
    assert "  dpo: dpo/eval/loss, dpo/eval/pairs, dpo/eval/rewards/accuracy, dpo/train/loss, " \
           "dpo/train/rewards/accuracy" in err
    assert not (sweep / "comparison.md").exists(), "nothing written on bad input"


def test_win_outcomes_print_counts_as_counts_and_rates_as_percentages():
    from alignkit.plugins.evaluation.metrics import win_rate

    m = {f"win/{k}": v for k, v in win_rate(0, 0, 4).items()}
    (row,) = evaluation_rows(m, [])
    # Wilson upper bound for 0 of 4: z^2 / (n + z^2) = 3.8415 / 7.8415 = 0.4899 -> 49%
    assert row == ["win rate over reference (95% CI)", "0% [0%, 49%]", "-",
                   "wins 0 (0%), ties 4 (100%), losses 0 (0%) of 4"]
    m = {f"win/{k}": v for k, v in win_rate(2, 1, 1).items()}
    assert evaluation_rows(m, [])[0][3] == "wins 2 (50%), ties 1 (25%), losses 1 (25%) of 4"


RULE_A = {"name": "rule", "fn": "demo:graded", "tolerance": 0.0, "cache": False}
RULE_B = {"name": "rule", "fn": "demo:exact", "tolerance": 0.0, "cache": True}


def test_win_rates_from_different_judges_are_flagged_and_ranked_apart(tmp_path):
    from alignkit.plugins.evaluation.metrics import win_rate

    for i, (wins, feedback) in enumerate([(2, RULE_A), (3, RULE_A), (4, RULE_B)]):
        m = {f"win/{k}": v for k, v in win_rate(wins, 4 - wins, 0).items()}
        write_run(tmp_path / str(i), [f"optimizer.beta={i}"], {}, {**m, "kl/per_sequence": 1.0},
                  feedback=dict(feedback, cache=bool(i)))  # the cache does not make another judge
    path, text = compare_runs([tmp_path])
    assert "**Win rates are not comparable across judges**" in text
    assert "- J1 = feedback `rule` (fn=demo:graded): runs `0`, `1`" in text
    assert "- J2 = feedback `rule` (fn=demo:exact): runs `2`" in text
    rows = table_rows(text, "run")
    assert rows[0][3:7] == ["rank", "win/win_rate", "win rate", "judge"]
    assert [r[3:7] for r in rows[1:]] == [["2 (J1)", "0.5", "50% (2 of 4)", "J1"],
                                          ["1 (J1)", "0.75", "75% (3 of 4)", "J1"],
                                          ["1 (J2)", "1", "100% (4 of 4)", "J2"]]
    assert "per judge** (win rates of different judges are not comparable): J1: `1`" in text
    assert comparison([tmp_path])["best"] is None, "no single best across judges"
    # one judge: nothing to flag
    same = tmp_path / "same"
    for i in range(2):
        write_run(same / str(i), [f"optimizer.beta={i}"], {}, {"win/win_rate": 0.5, "win/n": 4, "kl/per_sequence": 1},
                  feedback=RULE_A)
    assert "not comparable" not in compare_runs([same])[1]


JUDGE = {"name": "constitution", "model": None, "backend": "local", "constitution": "default", "style": "plain",
         "both_orders": True, "temperature": 0.7, "cache": True}


def test_judges_of_different_providers_are_named_by_what_names_them(tmp_path):
    """A sweep over feedback=rule,constitution (pipeline=rlaif_dpo): each judge by its rule, its model, its
    constitution; not the other provider's settings as None (fn=None, style=None, ...)."""
    for i, feedback in enumerate([RULE_A, JUDGE]):
        write_run(tmp_path / str(i), [f"feedback={feedback['name']}"], {},
                  {"win/win_rate": 0.5, "win/n": 4, "kl/per_sequence": 1.0, "reward/demo:graded/policy_mean": 0.1 * i},
                  feedback=feedback)
    text = compare_runs([tmp_path])[1]
    assert "- J1 = feedback `rule` (fn=demo:graded): runs `0`" in text
    assert "- J2 = feedback `constitution` (model=the policy of run 1, backend=local, constitution=default): runs `1`" \
        in text
    assert "None" not in text


def test_failed_unfinished_and_corrupt_jobs_are_marked_not_dropped(tmp_path):
    sweep = tmp_path / "sweep"
    write_run(sweep / "0", ["optimizer.beta=0.1"], {"dpo": {"eval/rewards/accuracy": 0.8}}, {"kl/per_sequence": 1})
    logged = [{"stage": "dpo", "step": s, "time": 0, "loss": 0.7 - 0.1 * s, "step_seconds": 1} for s in (1, 2)]
    write_run(sweep / "1", ["optimizer.beta=0.5"], {}, None, status="failed",
              error="ValueError: loss is nan\nTraceback (most recent call last):\n  ...", logged=logged)
    write_run(sweep / "2", ["optimizer.beta=1.0"], {}, summary=False)
    write_run(sweep / "3", ["optimizer.beta=2.0"], {})
    (sweep / "3" / "summary.json").write_text('{"pipeline": "dpo", "stat')
    path, text = compare_runs([sweep], kl_budget=5)
    assert "4 runs (3 not completed); ranked by `dpo/eval/rewards/accuracy`" in text
    rows = table_rows(text, "run")
    assert [r[:3] for r in rows[1:]] == [["0", "completed", "0.1"], ["1", "failed", "0.5"],
                                         ["2", "no summary", "1.0"], ["3", "unreadable", "2.0"]]
    assert [r[3] for r in rows[1:]] == ["1", "-", "-", "-"], "only completed runs are ranked"
    assert "- `1`: failed: ValueError: loss is nan\n" in text, "the error's first line"
    assert "- `2`: no summary: no summary.json: the job stopped before its first stage, or is still running" in text
    assert f"- `3`: unreadable: {sweep / '3' / 'summary.json'}: " in text
    # the failed run's last logged training values (metrics.jsonl), timings left out
    assert ["`train/loss`", "-", "0.5", "-", "-"] in table_rows(text, "metric")
    assert "**Best run with KL ≤ 5 nats per response: `0`**" in text


def test_frontier_labels_of_runs_on_the_same_spot_are_merged_not_overprinted(tmp_path):
    points = [{"run": "0", "label": "beta=0.1", "kl": -0.0185, "reward": 0.8},
              {"run": "1", "label": "beta=0.5", "kl": -0.0184, "reward": 0.8},
              {"run": "2", "label": "beta=0.1", "kl": -0.0266, "reward": 0.7},
              {"run": "3", "label": "beta=0.5", "kl": -0.0266, "reward": 0.7},
              {"run": "4", "label": "beta=1.0", "kl": -0.0220, "reward": 0.75}]
    tags = point_tags(points)
    # spans: KL 0.0082, metric 0.1; 0 and 1 are 0.0001 / 0.0082 = 1.2% apart in KL, under 4%
    assert label_groups(points, tags) == [(-0.0185, 0.8, "0, 1"), (-0.0266, 0.7, "2, 3"), (-0.0220, 0.75, "4")]
    long_names = [dict(p, run=f"runs/dpo-{p['run']}-long") for p in points[:2]]
    assert point_tags(long_names) == {"runs/dpo-0-long": "1", "runs/dpo-1-long": "2"}, "long names: numbers + key"
    from alignkit.plugins.evaluation.plots import frontier

    assert frontier(points, "m", tmp_path / "f.png", budget=0.1, best="0").stat().st_size > 1000


@pytest.mark.parametrize("higher, front", [(True, [(1, 0.5), (3, 0.9)]), (False, [(1, 0.5), (2, 0.4)])])
def test_pareto_front_follows_the_direction(higher, front):
    points = [{"kl": 1, "reward": 0.5}, {"kl": 2, "reward": 0.4}, {"kl": 3, "reward": 0.9}]
    assert [(p["kl"], p["reward"]) for p in pareto_front(points, higher)] == front


@pytest.mark.parametrize("metric, lower", [
    ("dpo/eval/loss", True), ("sft/eval/perplexity", True), ("kl/per_sequence", True),
    ("dpo/eval/kl_per_sequence", True), ("safety/over_refusal_policy", True), ("sycophancy/policy", True),
    ("diversity/self_bleu_policy", True), ("win/loss_rate", True),
    ("reward/gloss/policy_mean", False), ("win/win_rate", False), ("dpo/eval/rewards/accuracy", False),
    ("safety/refusal_harmful_policy", False), ("diversity/distinct_2_policy", False)])
def test_which_metrics_rank_lowest_first(metric, lower):
    from alignkit.plugins.evaluation.report import lower_is_better

    assert lower_is_better(metric) is lower


def test_a_round_pipeline_is_compared_by_its_last_round(tmp_path):
    for i in range(2):
        stages = {"dpo_1": {"eval/rewards/accuracy": 0.6 + i / 10}, "evaluate_1": {"kl/per_sequence": 9.0},
                  "dpo_2": {"eval/rewards/accuracy": 0.7 - i / 10}, "evaluate_2": {"kl/per_sequence": 1.0 + i}}
        write_run(tmp_path / str(i), [f"optimizer.beta={i}"], stages)
    c = comparison([tmp_path], kl_budget=5)
    assert c["key"] == "dpo_2/eval/rewards/accuracy"
    assert [r["metrics"] for r in c["records"]] == [{"kl/per_sequence": 1.0}, {"kl/per_sequence": 2.0}]
    assert c["best"]["run"] == "0", "round 2: 0.7 against 0.6"
    text = compare_runs([tmp_path])[1]
    assert "### Stage `dpo_1`" in text and "### Stage `dpo_2`" in text and "Stage `evaluate" not in text


def test_a_sweep_over_the_composite_combiner_shows_each_members_score(tmp_path):
    """`alignkit -m pipeline=llama2_chat preference_model.combiner=weighted,llama2`: the combined scores of two
    combiners are on different scales, so the comparison shows each member's policy mean too."""
    sweep = tmp_path / "sweep"
    runs = [("weighted", 0.12, 0.5, -0.25), ("llama2", -0.4, 0.75, 0.1)]
    for i, (combiner, combined, helpful, safe) in enumerate(runs):
        evaluation = {"reward/composite/policy_mean": combined, "reward/composite/helpful/policy_mean": helpful,
                      "reward/composite/safe/policy_mean": safe, "reward/composite/helpful/gain": helpful - 0.5,
                      "safety/refusal_harmful_policy": 0.5, "safety/over_refusal_policy": 0.25,
                      "kl/per_sequence": 0.01 * (i + 1)}
        write_run(sweep / str(i), ["pipeline=llama2_chat", f"preference_model.combiner={combiner}"], {}, evaluation)
    _, text = compare_runs([sweep])
    main = table_rows(text, "run")
    # ranked by the first scorer every run has (composite/helpful); the combined and the other member follow it
    assert main[0] == ["run", "status", "preference_model.combiner", "rank", "reward/composite/helpful/policy_mean",
                       "composite", "composite/safe", "gain", "KL/resp", "refusal (harmful)", "over-refusal"]
    assert [r[2:7] for r in main[1:]] == [["weighted", "2", "0.5", "0.12", "-0.25"],
                                          ["llama2", "1", "0.75", "-0.4", "0.1"]]
    _, text = compare_runs([sweep], metric="composite/safe")
    assert table_rows(text, "run")[0][4:7] == ["reward/composite/safe/policy_mean", "composite", "composite/helpful"]
