"""``FeedbackProviderContract``: what every feedback provider promises the stages that call ``judge``."""

from __future__ import annotations

from typing import Any, Sequence

import pytest

from alignkit.core.testing.components import _ComponentContract
from alignkit.core.testing.data import CONTRACT_PAIRS


class FeedbackProviderContract(_ComponentContract):
    """What every feedback provider promises the stages that call ``judge``.

    ``class TestMyJudge(FeedbackProviderContract): name = "my_judge"`` runs these checks on
    ``feedback=my_judge`` built as a stage builds it. Turn off what does not apply:
    ``symmetric = False`` for a judge with position bias (an LLM), ``deterministic = False`` for
    a sampling judge. Override the ``provider`` fixture to build it yourself.
    """

    kind = "feedback_provider"
    group = "feedback"
    pairs: Sequence[tuple[Any, str, str]] = CONTRACT_PAIRS
    symmetric: bool = True  # judging (b, a) mirrors judging (a, b)
    deterministic: bool = True  # the same input gives the same verdict
    tie_tolerance: float = 0.1  # a "tie" has |probability - 0.5| <= this
    symmetry_tolerance: float = 1e-6

    @pytest.fixture(scope="class")
    @classmethod
    def provider(cls, contract_registry, tmp_path_factory, contract_overrides):
        """The provider under test, built once per class as a stage builds it (override to build it yourself)."""
        return cls._build(contract_registry, tmp_path_factory, contract_overrides)

    @staticmethod
    def _judge(provider, pairs):
        return provider.judge([p for p, _, _ in pairs], [a for _, a, _ in pairs], [b for _, _, b in pairs])

    @pytest.fixture(scope="class")
    @classmethod
    def judgements(cls, provider):
        return cls._judge(provider, cls.pairs)

    def test_implements_the_protocol(self, provider):
        from alignkit.core.interfaces import FeedbackProvider

        assert isinstance(provider, FeedbackProvider), "a feedback provider needs judge(prompts, a, b)"

    def test_one_judgement_per_pair(self, judgements):
        from alignkit.core.types import Judgement

        assert isinstance(judgements, list), f"judge must return a list, not {type(judgements).__name__}"
        assert len(judgements) == len(self.pairs), f"{len(judgements)} judgements for {len(self.pairs)} pairs"
        assert all(isinstance(j, Judgement) for j in judgements)

    def test_probabilities_are_in_the_unit_interval(self, judgements):
        import math

        for i, j in enumerate(judgements):
            assert isinstance(j.probability, (int, float)) and math.isfinite(j.probability), (i, j)
            assert 0.0 <= j.probability <= 1.0, f"pair {i}: probability {j.probability} is outside [0, 1]"

    def test_preferred_agrees_with_the_probability(self, judgements):
        for i, j in enumerate(judgements):
            assert j.preferred in ("a", "b", "tie", "pending"), f"pair {i}: preferred={j.preferred!r}"
            if j.preferred == "a":
                assert j.probability >= 0.5, f"pair {i}: prefers A with P(A better)={j.probability}"
            elif j.preferred == "b":
                assert j.probability <= 0.5, f"pair {i}: prefers B with P(A better)={j.probability}"
            elif j.preferred == "tie":
                assert abs(j.probability - 0.5) <= self.tie_tolerance, f"pair {i}: a tie at {j.probability}"

    def test_names_itself_as_the_provider(self, judgements):
        assert {j.provider for j in judgements} == {self.name}

    def test_an_empty_batch_gives_no_judgements(self, provider):
        assert list(provider.judge([], [], [])) == []

    def test_unequal_lengths_are_an_error(self, provider):
        prompt, a, b = self.pairs[0]
        with pytest.raises(ValueError):
            provider.judge([prompt, prompt], [a], [b])

    def test_keeps_the_order_of_the_pairs(self, provider, judgements):
        if not self.deterministic:
            pytest.skip("the provider is not deterministic")
        reversed_ = self._judge(provider, list(reversed(self.pairs)))
        assert [(j.preferred, j.probability) for j in reversed(reversed_)] == \
               [(j.preferred, j.probability) for j in judgements]

    def test_swapping_a_and_b_mirrors_the_verdict(self, provider, judgements):
        if not self.symmetric:
            pytest.skip("the provider declares itself position-dependent (symmetric = False)")
        swapped = self._judge(provider, [(p, b, a) for p, a, b in self.pairs])
        mirror = {"a": "b", "b": "a", "tie": "tie", "pending": "pending"}
        for i, (j, s) in enumerate(zip(judgements, swapped)):
            assert s.preferred == mirror[j.preferred], f"pair {i}: {j.preferred} then {s.preferred} when swapped"
            if j.preferred != "pending":
                assert abs(s.probability - (1 - j.probability)) <= self.symmetry_tolerance, (i, j, s)
