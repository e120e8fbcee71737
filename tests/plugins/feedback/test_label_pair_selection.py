"""label.pair_selection=best_worst|divpo: the label stage samples k responses a prompt, scores
each with the feedback, and judges one pair picked from them (core/pair_selection.py)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from alignkit.core import ConfigError
from alignkit.core.diversity import distinct_n_diversity
from alignkit.core.pair_selection import quantile

# pipeline=calibrate is the label stage alone; with label.prompts > 0 it labels
ONLY_LABEL = ("pipeline=calibrate", "feedback=rule", "label.prompt_filter=null", "label.calibration.enabled=false")
SMALL = ("label.prompts=4", "label.eval_prompts=2", "label.max_new_tokens=8", "label.samples=4")

MODULE = '''
def longer(prompt, response):
    """The longer response scores higher: a signal a random tiny model still has."""
    return float(len(response))

def vowels(texts):
    """A diversity criterion that orders a random model's answers predictably: more vowels."""
    return [float(sum(ch in "aeiou" for ch in t.lower())) for t in texts]

def constant(prompt, response):
    return 1.0
'''


@pytest.fixture(scope="module")
def divpo_rules(tmp_path_factory):
    folder = tmp_path_factory.mktemp("divpo_rules")
    (folder / "divpo_rules.py").write_text(MODULE)
    sys.path.insert(0, str(folder))
    yield "divpo_rules"
    sys.path.remove(str(folder))
    sys.modules.pop("divpo_rules", None)


def jsonl(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def summary(rd):
    return json.loads((Path(rd.path) / "summary.json").read_text())["stages"]


def test_divpo_pairs_the_most_diverse_long_answer_with_the_least_diverse_short_one(run_alignkit, divpo_rules,
                                                                                    caplog):
    caplog.set_level(logging.INFO, logger="alignkit")
    rd = run_alignkit(*ONLY_LABEL, *SMALL, "feedback.fn=divpo_rules:longer", "label.pair_selection=divpo",
                      "label.diversity=divpo_rules:vowels", "label.divpo_rho=0.5")
    metrics = summary(rd)["label"]["metrics"]
    samples = jsonl(rd.path / "01-label/samples-train.jsonl") + jsonl(rd.path / "01-label/samples-eval.jsonl")
    assert len(samples) == 6 and all(len(s["responses"]) <= 4 for s in samples)
    formed = 0
    for s in samples:
        scores, div = s["scores"], s["diversity"]
        assert scores == [float(len(r)) for r in s["responses"]], "each sample scored by the rule"
        assert div == [float(sum(c in "aeiou" for c in r.lower())) for r in s["responses"]]
        if s["chosen"] is None:
            assert len(set(scores)) == 1, "no pair only when every sample scored the same"
            continue
        formed += 1
        median = quantile(scores, 0.5)  # rho = 0.5: both pools are split at the median
        good = [i for i, x in enumerate(scores) if x >= median]
        bad = [i for i, x in enumerate(scores) if x <= median and x < min(scores[g] for g in good)]
        c, r = s["chosen"], s["rejected"]
        assert c in good and div[c] == max(div[i] for i in good), "chosen: the most diverse high-scored sample"
        assert r in bad and div[r] == min(div[i] for i in bad), "rejected: the least diverse low-scored sample"
    # the pairs judged are exactly the selected ones, chosen first; the rule agrees (longer wins)
    train = jsonl(rd.path / "01-label/preferences/train.jsonl")
    selected = [(s["responses"][s["chosen"]], s["responses"][s["rejected"]])
                for s in jsonl(rd.path / "01-label/samples-train.jsonl") if s["chosen"] is not None]
    assert [(row["chosen"], row["rejected"]) for row in train] == selected and train
    assert metrics["label/selected_pairs"] == formed and metrics["label/prompts_without_pair"] == 6 - formed
    picked = [s for s in samples if s["chosen"] is not None]
    assert metrics["label/chosen_diversity"] == pytest.approx(
        sum(s["diversity"][s["chosen"]] for s in picked) / formed)
    assert metrics["label/rejected_diversity"] == pytest.approx(
        sum(s["diversity"][s["rejected"]] for s in picked) / formed)
    assert metrics["label/chosen_score"] > metrics["label/rejected_score"]
    assert any(m.startswith(f"label: divpo (rho 0.5, diversity divpo_rules:vowels) formed {formed} pairs from 6 "
                            "prompts") for m in (r.getMessage() for r in caplog.records))


def test_divpo_with_distinct_n_on_fixed_samples(run_alignkit, divpo_rules, monkeypatch):
    """The stage end to end with known samples (the policy's sampler replaced), pinned by hand."""
    from alignkit.plugins.feedback import label as label_module

    # one prompt, four samples (k = 0..3); the rule scores their length in characters
    answers = ["the cat sat on the mat",  # 22 chars
               "the cat sat on a mat",    # 20
               "a dog ran",               # 9
               "the cat sat"]             # 11
    # distinct-2: bigrams of 0 {the cat, cat sat, sat on, on the, the mat}: 'the cat', 'cat sat', 'sat on'
    #   are in 1 -> own {on the, the mat} = 2/5; 1 {the cat, cat sat, sat on, on a, a mat}: own {on a, a mat} = 2/5;
    #   2 {a dog, dog ran} = 2/2; 3 {the cat, cat sat}: both in 0 -> 0/2
    # scores 22, 20, 9, 11; median (rho 0.5) = (11 + 20) / 2 = 15.5: chosen pool {0, 1}, rejected pool {2, 3}
    # chosen: 0 and 1 tie on diversity 0.4 -> the higher score, 0; rejected: the least diverse of {2: 1.0, 3: 0.0} -> 3
    # (best_worst would pair 0 with 2, the shortest)
    assert distinct_n_diversity(answers, 2) == [0.4, 0.4, 1.0, 0.0]

    def fake_sample(model, tokenizer, prompts, *, seed, progress=None, **kwargs):
        if progress is not None:
            progress.update(len(prompts), 0)
        return [(None, answers[seed % 1000]) for _ in prompts]  # sample k is drawn with seed + k

    monkeypatch.setattr(label_module, "sample_responses", fake_sample)
    rd = run_alignkit(*ONLY_LABEL, "feedback.fn=divpo_rules:longer", "label.prompts=1", "label.eval_prompts=0",
                      "label.samples=4", "label.pair_selection=divpo")
    rows = jsonl(rd.path / "01-label/preferences/train.jsonl")
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("the cat sat on the mat", "the cat sat")]
    m = summary(rd)["label"]["metrics"]
    assert (m["label/selected_pairs"], m["label/chosen_diversity"], m["label/rejected_diversity"]) == (1, 0.4, 0.0)
    assert m["label/sample_diversity"] == pytest.approx((0.4 + 0.4 + 1.0 + 0.0) / 4)
    assert (m["label/chosen_score"], m["label/rejected_score"]) == (22.0, 11.0)


def test_best_worst_pairs_the_longest_with_the_shortest(run_alignkit, divpo_rules):
    rd = run_alignkit(*ONLY_LABEL, *SMALL, "feedback.fn=divpo_rules:longer", "label.pair_selection=best_worst")
    for s in jsonl(rd.path / "01-label/samples-train.jsonl"):
        if s["chosen"] is not None:
            assert s["scores"][s["chosen"]] == max(s["scores"]) and s["scores"][s["rejected"]] == min(s["scores"])
            assert s["diversity"] is None
    assert "label/chosen_diversity" not in summary(rd)["label"]["metrics"]


def test_the_default_still_judges_the_samples_two_by_two(run_alignkit, divpo_rules):
    rd = run_alignkit(*ONLY_LABEL, *SMALL, "feedback.fn=divpo_rules:longer")
    assert len(jsonl(rd.path / "01-label/pairs-train.jsonl")) <= 8  # 4 prompts x 4 samples / 2
    assert not (rd.path / "01-label/samples-train.jsonl").exists()
    assert "label/selected_pairs" not in summary(rd)["label"]["metrics"]


@pytest.mark.slow  # a whole pipeline on the tiny model (over 3 s)
def test_bad_options_are_reported_before_anything_runs(run_alignkit, divpo_rules):
    with pytest.raises(ConfigError, match=r"label.pair_selection must be one of pairs, best_worst, divpo, not 'mmr'"):
        run_alignkit(*ONLY_LABEL, "label.pair_selection=mmr")
    with pytest.raises(ConfigError, match=r"label.divpo_rho must be in \(0, 0.5\]"):
        run_alignkit(*ONLY_LABEL, "label.pair_selection=divpo", "label.divpo_rho=0.8")
    with pytest.raises(ConfigError, match="label.diversity must be one of distinct_n, embedding"):
        run_alignkit(*ONLY_LABEL, "label.pair_selection=divpo", "label.diversity=bleu")
    with pytest.raises(ConfigError, match="hands on the data's own pairs; use label.pair_selection=pairs"):
        run_alignkit(*ONLY_LABEL, "feedback=dataset", "label.pair_selection=divpo")


def test_a_reward_model_feedback_scores_the_samples_too(run_alignkit, divpo_rules):
    """feedback=reward_model over preference_model=rule: the same scores through the other provider."""
    rd = run_alignkit(*ONLY_LABEL, *SMALL, "feedback=reward_model", "preference_model=rule",
                      "preference_model.fn=divpo_rules:longer", "label.pair_selection=best_worst")
    rows = jsonl(rd.path / "01-label/samples-train.jsonl")
    assert all(s["scores"] == [float(len(r)) for r in s["responses"]] for s in rows)
    assert summary(rd)["label"]["metrics"]["label/selected_pairs"] > 0


def test_a_feedback_that_only_compares_two_answers_is_refused(run_alignkit, divpo_rules):
    with pytest.raises(ConfigError, match="feedback 'constitution' only compares two; use a feedback that scores"):
        run_alignkit(*ONLY_LABEL, "feedback=constitution", "label.pair_selection=divpo")
