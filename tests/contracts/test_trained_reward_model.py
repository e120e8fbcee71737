"""The session's trained reward model (conftest.py) is what the contract suites need it to be: a
trained artifact that loads as ``preference_model=bradley_terry`` and tells answers apart."""

from __future__ import annotations

import math

from alignkit.core.testing import CONTRACT_PAIRS, make_stage_context


def _scorer(registry, tmp_path, folder):
    ctx = make_stage_context(registry, tmp_path / "run", ["preference_model=bradley_terry",
                                                          f"preference_model.path={folder}"])
    return ctx.preference_model()


def test_the_reward_stage_completed_and_left_its_artifact(trained_reward_run, trained_reward_model):
    rd, _ = trained_reward_run
    stage = rd.summary["stages"]["reward_model"]
    assert stage["status"] == "completed" and stage["metrics"]["train/loss"] > 0, stage
    assert trained_reward_model.is_dir() and any(trained_reward_model.iterdir())


def test_the_artifact_loads_and_tells_two_answers_apart(trained_reward_run, trained_reward_model, tmp_path):
    _, registry = trained_reward_run
    scorer = _scorer(registry, tmp_path, trained_reward_model)
    prompt, good, bad = CONTRACT_PAIRS[0]
    scores = scorer.score([prompt, prompt], [good, bad]).tolist()
    assert all(math.isfinite(s) for s in scores) and abs(scores[0] - scores[1]) > 1e-4, scores


def test_training_moved_the_scores_towards_the_chosen_answers(trained_reward_run, trained_reward_model, tmp_path):
    """Trained on the contract pairs, the model ranks their chosen answers above the rejected ones
    more often than chance would."""
    _, registry = trained_reward_run
    scorer = _scorer(registry, tmp_path, trained_reward_model)
    pairs = [(p, a, b) for p, a, b in CONTRACT_PAIRS if a.strip() and b.strip() and a != b]
    chosen = scorer.score([p for p, _, _ in pairs], [a for _, a, _ in pairs])
    rejected = scorer.score([p for p, _, _ in pairs], [b for _, _, b in pairs])
    wins = int((chosen > rejected).sum())
    assert wins >= len(pairs) - 1, f"chosen above rejected on {wins} of {len(pairs)} training pairs"
