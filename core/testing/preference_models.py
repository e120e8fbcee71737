"""``PreferenceModelContract``: what every preference model promises PPO, evaluation and best-of-n."""

from __future__ import annotations

from typing import Any, Sequence

import pytest

from alignkit.core.testing.components import _ComponentContract
from alignkit.core.testing.data import CONTRACT_PAIRS


class PreferenceModelContract(_ComponentContract):
    """What every preference model promises PPO, evaluation and best-of-n.

    ``class TestMyScorer(PreferenceModelContract): name = "my_scorer"``. A score must not depend
    on what else is in the batch (padding bugs show up here), nor carry gradients.
    """

    kind = "preference_model"
    group = "preference_model"
    pairs: Sequence[tuple[Any, str, str]] = CONTRACT_PAIRS
    batch_tolerance: float = 1e-3
    batch_independent: bool = True  # False for a scorer that normalises over the batch on purpose

    @pytest.fixture(scope="class")
    @classmethod
    def preference_model(cls, contract_registry, tmp_path_factory, contract_overrides):
        """The model under test, built once per class as a stage builds it (override to build it yourself)."""
        return cls._build(contract_registry, tmp_path_factory, contract_overrides)

    @classmethod
    def _inputs(cls) -> tuple[list[Any], list[str]]:
        prompts = [p for p, _, _ in cls.pairs] * 2
        responses = [a for _, a, _ in cls.pairs] + [b for _, _, b in cls.pairs]
        return prompts, responses

    @pytest.fixture(scope="class")
    @classmethod
    def scores(cls, preference_model):
        return preference_model.score(*cls._inputs())

    def test_implements_the_protocol(self, preference_model):
        from alignkit.core.interfaces import PreferenceModel

        assert isinstance(preference_model, PreferenceModel), "a preference model needs score(prompts, responses)"

    def test_one_finite_score_per_response(self, scores):
        import torch

        n = len(self._inputs()[1])
        assert isinstance(scores, torch.Tensor) and tuple(scores.shape) == (n,), getattr(scores, "shape", scores)
        assert scores.dtype.is_floating_point and bool(torch.isfinite(scores).all()), scores

    def test_scores_carry_no_gradient(self, scores):
        assert not scores.requires_grad, "detach the scores: callers use them as rewards, not as a loss"

    def test_a_score_does_not_depend_on_the_batch(self, preference_model, scores):
        if not self.batch_independent:
            pytest.skip("the scorer declares it normalises over the batch (batch_independent = False)")
        import torch

        prompts, responses = self._inputs()
        alone = torch.stack([preference_model.score([p], [r]).reshape(()) for p, r in zip(prompts, responses)])
        assert torch.allclose(alone.float().cpu(), scores.float().cpu(), atol=self.batch_tolerance, rtol=1e-3), \
            "scores differ when responses are scored one at a time (padding or truncation bug?)"

    def test_an_empty_batch_gives_an_empty_tensor(self, preference_model):
        assert tuple(preference_model.score([], []).shape) == (0,)

    def test_unequal_lengths_are_an_error(self, preference_model):
        prompts, responses = self._inputs()
        with pytest.raises(ValueError):
            preference_model.score(prompts[:2], responses[:1])
