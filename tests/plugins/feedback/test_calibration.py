"""Labeler calibration: agreement with human labels before any training, warn or stop at chance."""

import json
import logging

import pytest

from alignkit.plugins.feedback.calibration import CalibrationConfig, binomial_p_value, calibrate, check
from alignkit.plugins.feedback.judgement import FeedbackError


def pairs_file(tmp_path, n=20, chosen_longer_every=None):
    rows = []
    for i in range(n):
        a, b = 10 + i, 20 + i
        right, wrong = f"{a} + {b} = {a + b}.", f"{a} + {b} = {a + b + 1}."
        if chosen_longer_every and i % chosen_longer_every == 0:
            right += " Done."  # the human-preferred answer is longer in some pairs only
        elif chosen_longer_every:
            wrong += " Done."
        rows.append({"prompt": [{"role": "user", "content": f"What is {a} + {b}?"}], "chosen": right, "rejected": wrong})
    path = tmp_path / "labelled.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_binomial_p_value():
    assert binomial_p_value(10, 10) == pytest.approx(1 / 1024)
    assert binomial_p_value(0, 10) == 1.0
    assert binomial_p_value(5, 10) == pytest.approx(638 / 1024)


def test_a_correct_rule_passes_calibration_and_writes_its_report(stage_ctx, tmp_path):
    ctx = stage_ctx("feedback=rule")  # the demo's arithmetic ground truth
    options = CalibrationConfig(path=str(pairs_file(tmp_path)), pairs=20)
    metrics = check(ctx, ctx.feedback(), options, ctx.dir)
    assert metrics["calibration/accuracy"] == 1.0 and metrics["calibration/passed"] == 1.0
    assert metrics["calibration/pairs"] == 20 and metrics["calibration/tie_rate"] == 0.0
    report = json.loads((ctx.dir / "calibration.json").read_text())
    assert report["accuracy"] == 1.0 and report["source"].endswith("labelled.jsonl")
    lines = (ctx.dir / "calibration.jsonl").read_text().splitlines()
    humans = [json.loads(x)["human"] for x in lines]
    assert 0 < humans.count("a") < 20, "the human choice is put in slot A or B at random"


def test_a_labeler_at_chance_warns_loudly(stage_ctx, tmp_path, rules_module, caplog):
    ctx = stage_ctx("feedback=rule", "feedback.fn=fbtest_rules:longer")
    options = CalibrationConfig(path=str(pairs_file(tmp_path, chosen_longer_every=2)), pairs=20)
    with caplog.at_level(logging.WARNING, logger="alignkit"):
        metrics = check(ctx, ctx.feedback(), options, ctx.dir)
    assert metrics["calibration/accuracy"] == 0.5 and metrics["calibration/passed"] == 0.0
    assert "LABELER NO BETTER THAN CHANCE" in caplog.text
    assert "will be used anyway" in caplog.text


def test_calibration_only_does_not_claim_its_labels_will_be_used(stage_ctx, tmp_path, rules_module, caplog):
    """pipeline=calibrate makes no labels: its banner must not say they "will be used anyway"."""
    ctx = stage_ctx("feedback=rule", "feedback.fn=fbtest_rules:longer")
    options = CalibrationConfig(path=str(pairs_file(tmp_path, chosen_longer_every=2)), pairs=20)
    with caplog.at_level(logging.WARNING, logger="alignkit"):
        check(ctx, ctx.feedback(), options, ctx.dir, labels_follow=False)
    assert "LABELER NO BETTER THAN CHANCE" in caplog.text
    assert "used anyway" not in caplog.text and "nothing is trained" in caplog.text


def test_a_labeler_at_chance_stops_the_run_when_asked(stage_ctx, tmp_path, rules_module):
    ctx = stage_ctx("feedback=rule", "feedback.fn=fbtest_rules:longer")
    options = CalibrationConfig(path=str(pairs_file(tmp_path, chosen_longer_every=2)), pairs=20, on_fail="stop")
    with pytest.raises(FeedbackError, match="no better than chance: accuracy 50.0% on 20 decided"):
        check(ctx, ctx.feedback(), options, ctx.dir)
    assert (ctx.dir / "calibration.json").exists(), "the evidence is written before stopping"


def test_a_labeler_that_only_ties_fails(stage_ctx, tmp_path, rules_module):
    ctx = stage_ctx("feedback=rule", "feedback.fn=fbtest_rules:says_good")
    metrics, _ = calibrate(ctx.feedback(), [{"prompt": [{"role": "user", "content": "q"}], "chosen": "x",
                                             "rejected": "y"}] * 4)
    assert metrics["tie_rate"] == 1.0 and metrics["decided"] == 0


def test_position_consistency_of_a_biased_judge(stage_ctx, chat_server, tmp_path):
    base, _ = chat_server
    ctx = stage_ctx("feedback=constitution", "feedback.backend=openai", f"feedback.base_url={base}/biased/v1",
                    "feedback.model=biased", "feedback.cache=false")
    rows = [{"prompt": [{"role": "user", "content": f"q{i}"}], "chosen": f"good {i}", "rejected": f"bad {i}"}
            for i in range(6)]
    metrics, records = calibrate(ctx.feedback(), rows)
    assert metrics["position_consistency"] == 0.0 and metrics["tie_rate"] == 1.0
    assert all(r["orders"] == pytest.approx([0.9, 0.1]) for r in records)
