"""core/diversity.py: per-response diversity, pinned to values worked out by hand."""

from __future__ import annotations

import math
import sys
import types

import pytest

from alignkit.core.diversity import (
    diversity_measure,
    distinct_n_diversity,
    embedding_diversity,
    mean_cosine_distances,
    words,
)
from alignkit.core.errors import ConfigError

TEXTS = ["the cat sat", "the dog sat", "a bird flew", "the cat"]


def test_words_lower_cases_and_splits_punctuation():
    assert words("The Cat, sat.") == ["the", "cat", ",", "sat", "."]


def test_distinct_1_is_the_share_of_a_texts_words_no_other_text_uses():
    # A {the, cat, sat}: 'the' in B and D, 'cat' in D, 'sat' in B -> 0/3
    # B {the, dog, sat}: only 'dog' is B's own                   -> 1/3
    # C {a, bird, flew}: all three its own                       -> 3/3
    # D {the, cat}: both in A                                    -> 0/2
    assert distinct_n_diversity(TEXTS, 1) == pytest.approx([0.0, 1 / 3, 1.0, 0.0], abs=1e-15)


def test_distinct_2_counts_bigrams():
    # A {(the,cat), (cat,sat)}: (the,cat) is D's too -> 1/2; B {(the,dog), (dog,sat)} -> 2/2;
    # C {(a,bird), (bird,flew)} -> 2/2; D {(the,cat)} is A's -> 0/1
    assert distinct_n_diversity(TEXTS, 2) == [0.5, 1.0, 1.0, 0.0]


def test_a_text_shorter_than_n_has_no_ngrams_and_scores_zero():
    # "hi" has no bigram; "hi there" has (hi, there), which "hi" cannot share -> 1/1
    assert distinct_n_diversity(["hi", "hi there"], 2) == [0.0, 1.0]
    assert distinct_n_diversity(["alone here"], 2) == [1.0]
    assert distinct_n_diversity(["one"], 2) == [0.0]


def test_repeated_ngrams_count_once():
    # A "yes yes yes" has the one distinct unigram 'yes', also in B -> 0/1; B {yes, no}: 'no' own -> 1/2
    assert distinct_n_diversity(["yes yes yes", "yes no"], 1) == [0.0, 0.5]


def test_mean_cosine_distance_to_the_others():
    # u=(1,0), v=(0,1), w=(1,1): cos(u,v)=0 -> 1; cos(u,w)=cos(v,w)=1/sqrt(2) -> 1 - 0.7071067811865476
    # u: (1 + 0.2928932188134524) / 2 = 0.6464466094067262, v the same; w: (2 x 0.2928932188134524) / 2
    d = 1 - 1 / math.sqrt(2)
    assert mean_cosine_distances([[1, 0], [0, 1], [1, 1]]) == pytest.approx([(1 + d) / 2, (1 + d) / 2, d], abs=1e-15)
    # length does not matter, only direction: (2,0) and (5,0) are the same point
    assert mean_cosine_distances([[2, 0], [5, 0]]) == pytest.approx([0.0, 0.0], abs=1e-15)
    # a zero vector has cosine 0 with everything; one vector alone has no other
    assert mean_cosine_distances([[1, 0], [0, 0]]) == [1.0, 1.0]
    assert mean_cosine_distances([[1, 0]]) == [0.0]


def test_embedding_diversity_uses_the_given_embedder():
    table = {"north": [0.0, 1.0], "east": [1.0, 0.0], "north-east": [1.0, 1.0]}
    d = 1 - 1 / math.sqrt(2)
    assert embedding_diversity(["north", "east", "north-east"], lambda ts: [table[t] for t in ts]) == \
        pytest.approx([(1 + d) / 2, (1 + d) / 2, d], abs=1e-15)
    with pytest.raises(ConfigError, match="returned 1 vectors for 2 texts"):
        embedding_diversity(["a", "b"], lambda ts: [[1.0]])


def test_measures_by_name(monkeypatch):
    assert diversity_measure("distinct_n", n=1)(TEXTS) == pytest.approx([0.0, 1 / 3, 1.0, 0.0])
    assert diversity_measure("distinct_n")(TEXTS) == [0.5, 1.0, 1.0, 0.0]  # n=2 by default
    # user functions by package.module:function, from a module made here
    module = types.ModuleType("divtest_embedders")
    module.axes = lambda texts: [[1.0, 0.0] if t.startswith("x") else [0.0, 1.0] for t in texts]
    module.lengths = lambda texts: [float(len(t)) for t in texts]
    module.short = lambda texts: [1.0]
    monkeypatch.setitem(sys.modules, "divtest_embedders", module)
    # x1, x2 share a direction; y is orthogonal: x1 -> (0 + 1)/2, x2 the same, y -> (1 + 1)/2
    assert diversity_measure("embedding", embedder="divtest_embedders:axes")(["x1", "x2", "y"]) == [0.5, 0.5, 1.0]
    assert diversity_measure("divtest_embedders:lengths")(["ab", "abc"]) == [2.0, 3.0]
    with pytest.raises(ConfigError, match="must return one finite number per text"):
        diversity_measure("divtest_embedders:short", what="label.diversity")(["a", "b"])


def test_bad_names_say_what_is_allowed(monkeypatch):
    with pytest.raises(ConfigError, match=r"label.diversity must be one of distinct_n, embedding or package"):
        diversity_measure("self_bleu", what="label.diversity")
    with pytest.raises(ConfigError, match="label.diversity_n must be at least 1"):
        diversity_measure("distinct_n", n=0, what="label.diversity")
    from alignkit.core import embeddings

    monkeypatch.setattr(embeddings, "available", lambda: False)
    with pytest.raises(ConfigError, match=r"label.diversity=embedding needs sentence embeddings: pip install"):
        diversity_measure("embedding", what="label.diversity")
