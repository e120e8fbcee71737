"""The comparison report on hand-made run directories (no model): table, budget, frontier."""

import json

import yaml

from alignkit.plugins.evaluation.plots import pareto_front, pick_series
from alignkit.plugins.evaluation.report import comparison, compare_runs, training_trajectory


def make_run(folder, overrides, kl, reward, config=None, status="completed"):
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config or {"optimizer": {"beta": 0.1}}))
    metrics = {"kl/per_sequence": kl, "reward/acc/policy_mean": reward, "reward/acc/gain": reward - 0.5}
    (folder / "summary.json").write_text(json.dumps({"pipeline": "dpo", "status": status, "stages": {
        "dpo": {"status": "completed", "metrics": {}, "artifacts": {}},
        "evaluate": {"status": "completed", "metrics": metrics, "artifacts": {}}}}))


def test_multirun_folder_gives_one_row_and_point_per_run_and_the_best_under_budget(tmp_path):
    sweep = tmp_path / "sweep"
    values = [(0.05, 9.0, 0.9), (0.1, 4.0, 0.8), (0.5, 1.0, 0.6), (1.0, 0.5, 0.55)]
    for i, (beta, kl, reward) in enumerate(values):
        make_run(sweep / str(i), ["pipeline=dpo", f"optimizer.beta={beta}", "model=tiny-random",
                                  f"hydra.sweep.dir={sweep}"], kl, reward)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    c = comparison([sweep], kl_budget=5.0)
    assert c["swept"] == ["optimizer.beta"], "only what differs between runs, never hydra.*"
    assert c["key"] == "reward/acc/policy_mean"
    assert [p["run"] for p in c["points"]] == ["0", "1", "2", "3"]
    assert c["best"]["run"] == "1", "0 has the highest reward but passes the budget"
    path, text = compare_runs([sweep], kl_budget=5.0)
    assert path == sweep / "comparison.md" and (sweep / "frontier.png").stat().st_size > 1000
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == "| run | status | optimizer.beta | rank | reward/acc/policy_mean | gain | KL/resp |"
    assert [r.split("|")[3].strip() for r in rows[1:]] == ["0.05", "0.1", "0.5", "1.0"]
    assert [r.split("|")[4].strip() for r in rows[1:]] == ["1", "2", "3", "4"], "rewards 0.9, 0.8, 0.6, 0.55"
    assert "Best run with KL ≤ 5 nats per response: `1`** (beta=0.1)" in text
    assert ("No run stays within the KL budget of 0.1 nats per response: the smallest KL is 0.5 (`3`)."
            in compare_runs([sweep], kl_budget=0.1)[1])


def test_separately_started_runs_are_told_apart_by_their_configs(tmp_path):
    make_run(tmp_path / "a", ["pipeline=dpo"], 1.0, 0.7, config={"optimizer": {"beta": 0.1}, "seed": 1})
    make_run(tmp_path / "b", ["pipeline=dpo"], 2.0, 0.8, config={"optimizer": {"beta": 0.3}, "seed": 1})
    c = comparison([tmp_path / "a", tmp_path / "b"], metric="acc")
    assert c["swept"] == ["optimizer.beta"]
    assert [r[2] for r in c["rows"]] == ["0.1", "0.3"]
    assert c["best"]["run"] == "b"


def test_pareto_front_and_series_picking():
    points = [{"kl": 1, "reward": 0.5}, {"kl": 2, "reward": 0.4}, {"kl": 3, "reward": 0.9}, {"kl": 0.5, "reward": 0.1}]
    assert [(p["kl"], p["reward"]) for p in pareto_front(points)] == [(0.5, 0.1), (1, 0.5), (3, 0.9)]
    keys = ["lr", "grad_norm", "loss", "rewards/margin", "policy/entropy", "rollout/kl", "step_seconds"]
    assert pick_series(keys) == ["loss", "rewards/margin", "rollout/kl", "policy/entropy"]


def test_training_trajectory_from_a_ppo_like_stream():
    records = [{"stage": "ppo", "step": i, "reward/mean": 0.1 * i, "rollout/kl": 0.5 * i, "rollout/kl_coef": 0.2}
               for i in (1, 2, 3)]
    points, label = training_trajectory([{"stage": "sft", "step": 1, "loss": 2.0}, *records])
    assert points == [(0.5, 0.1), (1.0, 0.2), (1.5, 0.1 * 3)]
    assert label == "ppo: reward/mean vs rollout/kl"


def test_commands_report_bad_directories_in_one_line(tmp_path, capsys):
    from alignkit.plugins.evaluation.cli import evaluate_command, report_command

    assert evaluate_command([str(tmp_path)]) == 2
    assert "is not an alignkit run directory" in capsys.readouterr().err
    assert report_command([str(tmp_path)]) == 2
    assert "no run directory" in capsys.readouterr().err
