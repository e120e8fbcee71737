"""Agreement and aggregation against values computed by hand."""

from __future__ import annotations

import math
import random

import pytest

from alignkit.plugins.human.agreement import (
    Vote,
    aggregate,
    agreement,
    cohen_kappa,
    dawid_skene,
    flip_rate,
    krippendorff_alpha,
    majority,
)


def test_cohen_kappa_hand_computed():
    # agree on 4 of 6: p_o = 4/6; marginals x: a3 b2 tie1, y: a3 b3 -> p_e = (9 + 6) / 36
    x = dict(enumerate(["a", "a", "b", "b", "a", "tie"]))
    y = dict(enumerate(["a", "b", "b", "b", "a", "a"]))
    assert cohen_kappa(x, y) == pytest.approx((4 / 6 - 15 / 36) / (1 - 15 / 36))  # = 3/7
    assert cohen_kappa(x, y) == pytest.approx(3 / 7)
    assert cohen_kappa(x, x) == pytest.approx(1.0)
    assert cohen_kappa({1: "a"}, {2: "a"}) is None  # nothing in common
    assert cohen_kappa({1: "a", 2: "a"}, {1: "a", 2: "a"}) is None  # p_e = 1: undefined


def test_krippendorff_alpha_small_hand_computed():
    # coincidences: o_aa = 2 + 1, o_ab = o_ba = 1 + 1, o_bb = 2; n_a = 5, n_b = 4, n = 9
    # D_o = 4/9, D_e = (5*4 + 4*5) / (9*8) = 5/9, alpha = 1 - 0.8
    units = {1: ["a", "a"], 2: ["a", "b"], 3: ["b", "b"], 4: ["a", "a", "b"], 5: ["a"]}
    assert krippendorff_alpha(units) == pytest.approx(0.2)


def test_krippendorff_alpha_reference_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders, 12 units,
    # missing values; nominal alpha = 0.743.
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = {u: [str(c[u]) for c in coders if c[u] is not None] for u in range(12)}
    assert krippendorff_alpha(units) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha({1: ["a"], 2: ["b"]}) is None  # nothing pairable


def test_two_annotators_kappa_equals_hand_value_in_summary():
    x = ["a", "a", "b", "b", "a", "tie"]
    y = ["a", "b", "b", "b", "a", "a"]
    rows = [Vote(i, "x", c) for i, c in enumerate(x)] + [Vote(i, "y", c) for i, c in enumerate(y)]
    rows.append(Vote(99, "x", "skip"))  # a skip is not a vote
    summary = agreement(rows)
    assert summary["annotators"] == 2
    assert summary["cohen_kappa"]["x / y"]["items"] == 6
    assert summary["cohen_kappa"]["x / y"]["kappa"] == pytest.approx(3 / 7)


def test_majority_soft_labels():
    rows = [Vote(1, "x", "a"), Vote(1, "y", "a"), Vote(1, "z", "b"),
            Vote(2, "x", "tie"), Vote(2, "y", "b"),
            Vote(3, "x", "a"), Vote(3, "y", "b"),
            Vote(4, "x", "skip")]
    out = majority(rows)
    assert out[1].probability == pytest.approx(2 / 3) and out[1].preferred == "a"
    assert out[1].agreement == pytest.approx(2 / 3) and out[1].votes == 3
    assert out[2].probability == pytest.approx(0.25) and out[2].preferred == "b"  # tie counts half
    assert out[3].probability == pytest.approx(0.5) and out[3].preferred == "tie"
    assert 4 not in out  # only skipped


def test_dawid_skene_learns_an_adversarial_annotator():
    """Two careful annotators and one who always flips: majority gives 2/3, Dawid–Skene ~1."""
    rng = random.Random(0)
    truth = {i: rng.choice("ab") for i in range(40)}
    flip = {"a": "b", "b": "a"}
    rows = []
    for item, t in truth.items():
        rows += [Vote(item, "good1", t), Vote(item, "good2", t), Vote(item, "flipper", flip[t])]
    ds, maj = dawid_skene(rows), majority(rows)
    for item, t in truth.items():
        assert maj[item].probability == pytest.approx(2 / 3 if t == "a" else 1 / 3)
        assert ds[item].preferred == t
        assert (ds[item].probability > 0.95) if t == "a" else (ds[item].probability < 0.05)
    assert aggregate(rows, "dawid_skene")[0].preferred == truth[0]
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(rows, "nope")


def test_flip_rate_from_disagreement():
    # 4 items, two annotators, one disagreement: d = 1/4 = 2e(1-e) -> e = (1 - sqrt(1/2)) / 2
    rows = [Vote(i, "x", "a") for i in range(4)] + [Vote(0, "y", "b")] + [Vote(i, "y", "a") for i in range(1, 4)]
    assert flip_rate(rows) == pytest.approx((1 - math.sqrt(0.5)) / 2)
    assert flip_rate([Vote(1, "x", "a")]) is None
    # simulated annotators with a known flip rate: the estimate recovers it
    rng = random.Random(1)
    sim = []
    for item in range(3000):
        t = rng.choice("ab")
        for who in ("p", "q"):
            sim.append(Vote(item, who, t if rng.random() > 0.2 else {"a": "b", "b": "a"}[t]))
    assert flip_rate(sim) == pytest.approx(0.2, abs=0.02)
