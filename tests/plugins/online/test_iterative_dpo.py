"""``pipeline=iterative_dpo`` on tiny-random: every round labels pairs sampled from the current
policy and runs DPO against the weights the round started from; rounds.jsonl records each round."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import alignkit.plugins.data.demo as demo_pkg

DEMO = Path(demo_pkg.__file__).parent


def variety(prompt, response):
    """A rule with a signal on a random model: more distinct characters is better."""
    return float(len(set(response)))


def jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.mark.slow  # a whole multi-round pipeline
def test_each_round_trains_against_the_previous_rounds_policy(run_alignkit, tmp_path):
    cache = tmp_path / "reference_logps"
    rd = run_alignkit("pipeline=iterative_dpo", "pipeline.rounds=2", "data=files",
                      f"data.prompts={DEMO / 'prompts.jsonl'}",
                      f"feedback.fn={__name__}:variety", "label.prompt_filter=null", "label.samples=2",
                      "label.prompts=6", "label.eval_prompts=2",
                      "label.max_new_tokens=8", "label.calibration.enabled=false", f"optimizer.cache_dir={cache}",
                      "optimizer.max_eval_pairs=2", "optimizer.kl_prompts=2", "optimizer.kl_max_new_tokens=6",
                      "optimizer.trainer.learning_rate=1e-3", f"evaluate.scorers=[{__name__}:variety]")
    stages = json.loads((rd.path / "summary.json").read_text())["stages"]
    assert list(stages) == ["sft", "label_1", "dpo_1", "evaluate_1", "label_2", "dpo_2", "evaluate_2"]
    assert all(s["status"] == "completed" for name, s in stages.items() if name != "sft")
    assert stages["dpo_2"]["metrics"]["data/train_pairs"] == stages["label_2"]["metrics"]["label/train_pairs"]

    from alignkit.core.lm import sample_responses
    from alignkit.core.registry import Registry
    from alignkit.core.types import ModelSpec
    from alignkit.plugins.dpo.dpo import _pair_key, encode_pairs, model_fingerprint, pair_logps

    registry = Registry()
    round1 = rd.path / "03-dpo_1" / "model"
    trained = registry.load_model(ModelSpec(str(round1)), "policy")
    start = registry.load_model(ModelSpec("tiny-random", options=dict(rd_options())), "policy")

    # round 2 labelled pairs sampled from round 1's policy (label seed 0 + 1 in round 2)
    pairs = jsonl(rd.path / "05-label_2" / "pairs-train.jsonl")
    again = sample_responses(trained.model, trained.tokenizer, [p["prompt"] for p in pairs], max_new_tokens=8,
                             batch_size=16, seed=1, max_prompt_tokens=96)
    assert [t.strip() for _, t in again] == [p["response_a"] for p in pairs]

    # dpo_2's reference log-probs are those of round 1's weights, not of the starting model
    folder = cache / model_fingerprint(str(round1), {})
    stored = json.loads((folder / "reference_logps.json").read_text())
    encoded, _ = encode_pairs(trained.tokenizer, jsonl(rd.path / "05-label_2" / "preferences" / "train.jsonl"), 96)
    used = [p for p in encoded if _pair_key(p) in stored]
    assert used, "dpo_2 cached reference log-probs under round 1's weights"
    with torch.no_grad():
        chosen, rejected, _, _ = pair_logps(trained.model.eval(), used)
        start_chosen, _, _, _ = pair_logps(start.model.eval(), used)
    cached = torch.tensor([stored[_pair_key(p)] for p in used])
    assert torch.allclose(cached[:, 0], chosen, atol=1e-4) and torch.allclose(cached[:, 1], rejected, atol=1e-4)
    assert not torch.allclose(cached[:, 0], start_chosen, atol=1e-2), "round 1 moved the weights"
    # dpo_1's reference was the starting model
    assert (cache / model_fingerprint("tiny-random", rd_options())).is_dir()

    # per round: reward, KL and win rate, against where round 1 began, in rounds.jsonl
    results = json.loads((rd.path / "07-evaluate_2" / "results.json").read_text())
    assert results["reference"] == "tiny-random" and results["policy"].endswith("06-dpo_2/model")
    rounds = jsonl(rd.path / "rounds.jsonl")
    assert [r["round"] for r in rounds] == [1, 2]
    for key in ("label/label/train_pairs", "dpo/eval/kl_per_sequence", "evaluate/kl/per_sequence",
                "evaluate/win/win_rate", "evaluate/reward/variety/policy_mean"):
        assert all(key in r["metrics"] for r in rounds), key
    assert rounds[1]["metrics"]["dpo/eval/kl_per_sequence"] == stages["dpo_2"]["metrics"]["eval/kl_per_sequence"]

    # the last round's report plots and tabulates every round, each from its own evaluate stage
    report = (rd.path / "report.md").read_text()
    assert "## By round" in report and (rd.path / "plots" / "rounds.png").stat().st_size > 1000
    from alignkit.plugins.evaluation.report import fmt

    lines = [line for line in report.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(lines) == 2
    for k, line in enumerate(lines, start=1):
        wanted = stages[f"evaluate_{k}"]["metrics"]["reward/variety/policy_mean"]
        assert line.split(" | ")[1] == fmt(wanted)


def rd_options():
    from alignkit.core.testing import compose

    return dict(compose(["model=tiny-random"]).model.options)
