"""Training-time alarms on a constructed metric stream, and end to end on a tiny run."""

import json
from pathlib import Path

import pytest

from alignkit.plugins.evaluation.diagnostics import DiagnosticsConfig, Monitor

DEMO = Path(__file__).parents[3] / "plugins" / "data" / "demo"


def feed(monitor, stream, stage="ppo"):
    fired = []
    for step, metrics in enumerate(stream, start=1):
        fired += monitor.observe(stage, step, metrics)
    return fired


def test_kl_budget_fires_once_when_passed():
    monitor = Monitor(DiagnosticsConfig(kl_budget=10.0))
    alarms = feed(monitor, [{"objective/kl": 1.0}, {"objective/kl": 5.0}, {"objective/kl": 12.0},
                            {"objective/kl": 15.0}, {"kl_coef": 99.0}])
    assert [(a.kind, a.step, a.metric, a.value) for a in alarms] == [("kl_budget", 3, "objective/kl", 12.0)]
    assert "KL budget 10" in alarms[0].message


def test_no_budget_no_kl_alarm():
    assert feed(Monitor(DiagnosticsConfig()), [{"kl": 1e6}]) == []


def test_entropy_collapse_against_its_first_value_and_a_floor():
    monitor = Monitor(DiagnosticsConfig(entropy_collapse=0.25))
    alarms = feed(monitor, [{"policy/entropy": 2.0}, {"policy/entropy": 1.0}, {"policy/entropy": 0.4}])
    assert [(a.kind, a.step) for a in alarms] == [("entropy_collapse", 3)]  # 0.4 < 0.25 * 2.0
    floor = Monitor(DiagnosticsConfig(entropy_floor=1.5, entropy_collapse=0.0))
    assert [a.step for a in feed(floor, [{"entropy": 2.0}, {"entropy": 1.4}])] == [2]


def test_runaway_length():
    monitor = Monitor(DiagnosticsConfig(length_growth=3.0))
    alarms = feed(monitor, [{"rollout/response_length": 20}, {"rollout/response_length": 45},
                            {"rollout/response_length": 61}, {"rollout/response_length": 90}])
    assert [(a.kind, a.step, a.limit) for a in alarms] == [("runaway_length", 3, 60.0)]
    absolute = Monitor(DiagnosticsConfig(max_response_length=100, length_growth=1e9))
    assert [a.step for a in feed(absolute, [{"response_length": 50}, {"response_length": 120}])] == [2]


def test_every_n_steps_and_skipped_stages():
    monitor = Monitor(DiagnosticsConfig(kl_budget=1.0, every=2))
    assert [a.step for a in feed(monitor, [{"kl": 5.0}, {"kl": 5.0}])] == [2]
    assert feed(Monitor(DiagnosticsConfig(kl_budget=1.0)), [{"kl/per_sequence": 5.0}], stage="evaluate") == []
    assert feed(Monitor(DiagnosticsConfig(kl_budget=1.0, enabled=False)), [{"kl": 5.0}]) == []


@pytest.mark.slow  # a whole pipeline on the tiny model (over 3 s)
def test_alarm_warns_logs_and_stops_a_real_stage(run_alignkit, capsys, tmp_path):
    # DPO logs length/chosen every step: watch it with a tiny maximum and stop on the alarm.
    rd = run_alignkit("pipeline=dpo", "data=files", f"data.preferences={DEMO / 'preferences.jsonl'}",
                      f"data.prompts={DEMO / 'prompts.jsonl'}", f"optimizer.cache_dir={tmp_path / 'cache'}",
                      "trainer.max_steps=6", "optimizer.kl_prompts=0", "optimizer.max_eval_pairs=4",
                      "diagnostics.length_metrics=[length/chosen]", "diagnostics.max_response_length=1",
                      "diagnostics.stop=true")
    alarms = [json.loads(x) for x in (rd.path / "alarms.jsonl").read_text().splitlines()]
    assert [(a["stage"], a["step"], a["kind"]) for a in alarms] == [("dpo", 1, "runaway_length")]
    assert "alarm" in capsys.readouterr().err
    steps = [json.loads(x) for x in (rd.path / "metrics.jsonl").read_text().splitlines()]
    logged = [s["step"] for s in steps if s["stage"] == "dpo" and "loss" in s and "eval/loss" not in s]
    assert logged[0] == 1 and len(logged) <= 2, logged  # the engine ends the stage at the next step boundary
    summary = json.loads((rd.path / "summary.json").read_text())
    assert summary["stages"]["dpo"]["metrics"]["steps"] < 6
    assert summary["stages"]["evaluate"]["status"] == "completed", "the run goes on with the next stage"
    assert "runaway_length" in (rd.path / "report.md").read_text()


def test_a_misspelled_diagnostics_option_fails_before_any_work(run_alignkit, tmp_path):
    import pytest

    from alignkit.core.errors import ConfigError

    with pytest.raises(ConfigError, match="kl_budgett"):
        run_alignkit("pipeline=sft", "+diagnostics.kl_budgett=3")
    assert not (tmp_path / "run" / "summary.json").exists()
