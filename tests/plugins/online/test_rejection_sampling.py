"""``best_of_n`` and ``pipeline=rejection_sampling`` on tiny-random: the stage keeps exactly the
best-scored response of each prompt, the next sft stage trains on those, and each round samples
from the policy the round before trained."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import alignkit.plugins.data.demo as demo_pkg
from alignkit.core.errors import DataError
from alignkit.plugins.rejection_sampling.best_of_n import best_of

PROMPTS = Path(demo_pkg.__file__).parent / "prompts.jsonl"
FAST = ("data=files", f"data.prompts={PROMPTS}", "preference_model=rule", "best_of_n.prompt_filter=null",
        "best_of_n.prompts=6", "best_of_n.samples=4", "best_of_n.max_new_tokens=8", "best_of_n.batch_size=8",
        "pipeline.rounds=2")


def variety(prompt, response):
    """A score that differs between random samples: the number of distinct characters."""
    return float(len(set(response)))


def jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_best_of_picks_the_first_highest_non_empty_response():
    assert best_of([0.1, 0.9, 0.9, 0.3], ["a", "b", "c", "d"], None) == 1  # equal bests: the first
    assert best_of([0.1, 5.0, 0.2], ["a", "   ", "c"], None) == 2  # an empty answer never wins
    assert best_of([0.1, 0.2], ["a", "b"], threshold=0.5) is None
    assert best_of([0.1, 0.7], ["a", "b"], threshold=0.5) == 1
    assert best_of([1.0], [""], None) is None


@pytest.mark.slow  # whole rejection-sampling rounds on the tiny model (over 3 s)
def test_rejection_sampling_keeps_exactly_the_best_and_rounds_chain(run_alignkit, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="alignkit")
    rd = run_alignkit("pipeline=rejection_sampling", *FAST, f"preference_model.fn={__name__}:variety")
    stages = json.loads((rd.path / "summary.json").read_text())["stages"]
    assert list(stages) == ["sft", "best_of_n_1", "sft_1", "evaluate_1", "best_of_n_2", "sft_2", "evaluate_2"]
    assert stages["sft"]["status"] == "skipped"  # the data has no SFT examples
    for k, folder in ((1, "02-best_of_n_1"), (2, "05-best_of_n_2")):
        samples = jsonl(rd.path / folder / "samples.jsonl")
        kept = jsonl(rd.path / folder / "sft" / "train.jsonl")
        assert len(samples) == 6 * 4 and len(kept) == stages[f"best_of_n_{k}"]["metrics"]["best_of_n/kept"]
        expected = []
        for i in range(0, len(samples), 4):
            group = samples[i:i + 4]
            assert all(s["prompt"] == group[0]["prompt"] for s in group)
            for s in group:
                assert s["score"] == variety(s["prompt"], s["response"])
            best = best_of([s["score"] for s in group], [s["response"] for s in group], None)
            assert [s["kept"] for s in group] == [j == best for j in range(4)]
            if best is not None:
                expected.append((group[0]["prompt"], group[best]["response"]))
        assert [(r["messages"][:-1], r["messages"][-1]["content"]) for r in kept] == expected
        assert all(r["messages"][-1]["role"] == "assistant" for r in kept)
        metrics = stages[f"best_of_n_{k}"]["metrics"]
        assert metrics["best_of_n/kept_score_mean"] >= metrics["best_of_n/score_mean"]
    # each round's sft trained on its own round's winners
    assert stages["sft_1"]["metrics"]["data/train_examples"] == stages["best_of_n_1"]["metrics"]["best_of_n/kept"]
    assert stages["sft_2"]["metrics"]["data/train_examples"] == stages["best_of_n_2"]["metrics"]["best_of_n/kept"]
    # round 2 sampled afresh (its seed is round 1's + 1) from the policy round 1 trained
    from alignkit.core.lm import sample_responses
    from alignkit.core.registry import Registry
    from alignkit.core.types import ModelSpec

    second = jsonl(rd.path / "05-best_of_n_2" / "samples.jsonl")
    prompts = [s["prompt"] for s in second]
    loaded = Registry().load_model(ModelSpec(str(rd.path / "03-sft_1" / "model")), "policy")
    again = [t.strip() for _, t in sample_responses(loaded.model, loaded.tokenizer, prompts, max_new_tokens=8,
                                                    batch_size=8, seed=1, max_prompt_tokens=96)]
    assert again == [s["response"] for s in second]
    # every round's evaluate compares with where round 1 began; rounds.jsonl lines them up
    results = json.loads((rd.path / "07-evaluate_2" / "results.json").read_text())
    assert results["reference"] == "tiny-random" and results["policy"].endswith("06-sft_2/model")
    rounds = jsonl(rd.path / "rounds.jsonl")
    assert [r["round"] for r in rounds] == [1, 2]
    assert rounds[1]["stages"] == ["best_of_n_2", "sft_2", "evaluate_2"]
    for key in ("best_of_n/best_of_n/kept_score_mean", "sft/train/loss",
                "evaluate/kl/per_sequence", "evaluate/reward/rule/policy_mean"):
        assert all(key in r["metrics"] for r in rounds), key
    # each round's sampling is reported (core/progress.py): 6 prompts x 4 samples
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("best_of_n: train: 24 samples, ") for m in messages) == 2, messages


@pytest.mark.slow  # whole rejection-sampling rounds on the tiny model (over 3 s)
def test_a_threshold_drops_prompts_whose_best_is_not_good_enough(run_alignkit, tmp_path):
    args = ("pipeline=rejection_sampling", *FAST, f"preference_model.fn={__name__}:variety", "pipeline.rounds=1",
            "pipeline.stages=[{name: best_of_n, optimizer: best_of_n, config: ${best_of_n}, repeat: true}]")
    rd = run_alignkit(*args, "best_of_n.threshold=23", run_dir=tmp_path / "a")
    samples = jsonl(rd.path / "01-best_of_n_1" / "samples.jsonl")
    kept = jsonl(rd.path / "01-best_of_n_1" / "sft" / "train.jsonl")
    bests = [max(s["score"] for s in samples[i:i + 4] if s["response"]) for i in range(0, len(samples), 4)]
    assert 0 < len(kept) == sum(b >= 23 for b in bests) < len(bests), bests
    assert all(r["score"] >= 23 for r in kept)
    metrics = json.loads((rd.path / "summary.json").read_text())["stages"]["best_of_n_1"]["metrics"]
    assert metrics["best_of_n/below_threshold"] == sum(b < 23 for b in bests)
    with pytest.raises(DataError, match="kept no response"):
        run_alignkit(*args, "best_of_n.threshold=1000", run_dir=tmp_path / "b")


@pytest.mark.slow  # whole rejection-sampling rounds on the tiny model (over 3 s)
def test_best_over_rounds_keeps_each_prompts_best_answer_of_every_round(run_alignkit, tmp_path):
    """best_of_n.best_over_rounds (Llama 2): round 2 scores round 1's kept answer again beside its own samples
    and keeps whichever is best; prompts round 2 did not sample keep round 1's answer."""
    prompts = tmp_path / "prompts.jsonl"
    questions = ["Name a colour.", "Say hello.", "Count to three.", "Name a fruit.", "Name an animal."]
    prompts.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": q}]}) + "\n" for q in questions))
    rd = run_alignkit("pipeline=rejection_sampling", *FAST, f"data.prompts={prompts}", "data.eval_fraction=0",
                      f"preference_model.fn={__name__}:variety", "best_of_n.prompts=4", "best_of_n.samples=2",
                      "best_of_n.best_over_rounds=true", "pipeline.skip=[evaluate]")
    stages = json.loads((rd.path / "summary.json").read_text())["stages"]

    def pool(folder):
        return {json.dumps(r["messages"][:-1]): r for r in jsonl(rd.path / folder / "sft" / "train.jsonl")}

    first, second = pool("02-best_of_n_1"), pool("05-best_of_n_2")
    samples = jsonl(rd.path / "05-best_of_n_2" / "samples.jsonl")
    sampled = {json.dumps(s["prompt"]) for s in samples}
    assert len(sampled) == 4 and len(first) == 4
    for key, row in first.items():
        answer = row["messages"][-1]["content"]
        if key not in sampled:  # not drawn in round 2: carried over as it was
            assert second[key] == row
            continue
        group = [s for s in samples if json.dumps(s["prompt"]) == key]
        # round 1's answer comes first, scored again by the same rule, then round 2's two samples
        assert [s["sample"] for s in group] == [-1, 0, 1] and group[0]["response"] == answer
        assert all(s["score"] == variety(None, s["response"]) for s in group)
        best = max(group, key=lambda s: s["score"])  # the first of equal bests: round 1's answer wins ties
        assert second[key]["messages"][-1]["content"] == best["response"]
        assert second[key]["score"] == best["score"] >= row["score"]
        assert [s["kept"] for s in group] == [s is best for s in group]
    new_prompts = sampled - set(first)  # drawn in round 2 only: their best of two
    for key in new_prompts:
        group = [s for s in samples if json.dumps(s["prompt"]) == key]
        assert [s["sample"] for s in group] == [0, 1]
    assert set(second) == set(first) | sampled
    metrics = stages["best_of_n_2"]["metrics"]
    assert metrics["best_of_n/kept"] == len(second) == stages["sft_2"]["metrics"]["data/train_examples"]
    assert metrics["best_of_n/carried_over"] == len(set(first) - sampled)
    assert metrics["best_of_n/kept_from_earlier_rounds"] == sum(
        1 for s in samples if s["sample"] == -1 and s["kept"])
    assert "best_of_n/carried_over" not in stages["best_of_n_1"]["metrics"] or \
        stages["best_of_n_1"]["metrics"]["best_of_n/carried_over"] == 0
