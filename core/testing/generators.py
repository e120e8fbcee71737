"""``GeneratorContract``: what every generation backend promises the stages that sample."""

from __future__ import annotations

from typing import Any, Sequence

import pytest

from alignkit.core.testing.components import _ComponentContract
from alignkit.core.testing.helpers import load_tiny_model


class GeneratorContract(_ComponentContract):
    """What every generation backend promises the stages that sample (see ``interfaces.Generator``).

    ``class TestMyBackend(GeneratorContract): name = "my_backend"`` builds ``generation=my_backend``
    and samples from the ``tiny-random`` model: one list of new token ids per prompt, in order, at
    most ``max_new_tokens`` long, the same tokens for the same ``seed``, and (``greedy_matches_transformers``)
    greedy decoding that agrees with transformers' ``generate`` once cut at the stop id.
    """

    kind = "generator"
    group = "generation"
    prompt_ids: Sequence[Sequence[int]] = ((5, 17, 42, 8), (3, 9), (11, 12, 13, 14, 15, 16))  # unequal lengths
    max_new_tokens: int = 6
    greedy_matches_transformers: bool = True

    @pytest.fixture(scope="class")
    @classmethod
    def generator(cls, contract_registry, tmp_path_factory, contract_overrides):
        """The backend under test, built as a stage builds it (override to build it yourself)."""
        return cls._build(contract_registry, tmp_path_factory, contract_overrides)

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls) -> Any:
        return load_tiny_model()

    def _generate(self, generator, model, prompts, **options):
        tokenizer = model.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        settings = {"max_new_tokens": self.max_new_tokens, "temperature": 0.0, "top_p": 1.0,
                    "stop_ids": [tokenizer.eos_token_id], "pad_id": pad, **options}
        return generator.generate(model.model, [list(p) for p in prompts], **settings)

    def test_implements_the_protocol(self, generator):
        from alignkit.core.interfaces import Generator

        assert isinstance(generator, Generator), "a generator needs a `name` and generate(model, prompt_ids, ...)"
        assert isinstance(generator.name, str) and generator.name

    def test_one_list_of_new_tokens_per_prompt(self, generator, model):
        out = self._generate(generator, model, self.prompt_ids)
        assert isinstance(out, list) and len(out) == len(self.prompt_ids), f"{len(out)} outputs for " \
                                                                           f"{len(self.prompt_ids)} prompts"
        vocab = model.model.config.vocab_size
        for i, tokens in enumerate(out):
            assert isinstance(tokens, list) and all(isinstance(t, int) and 0 <= t < vocab for t in tokens), (i, tokens)
            assert 0 < len(tokens) <= self.max_new_tokens, f"prompt {i}: {len(tokens)} new tokens"

    def test_an_empty_batch_gives_nothing(self, generator, model):
        assert self._generate(generator, model, []) == []

    def test_the_same_seed_gives_the_same_sample(self, generator, model):
        first = self._generate(generator, model, self.prompt_ids, temperature=1.0, seed=7)
        second = self._generate(generator, model, self.prompt_ids, temperature=1.0, seed=7)
        assert first == second, "sampling with the same seed must give the same tokens"

    def test_greedy_decoding_agrees_with_transformers(self, generator, model):
        if not self.greedy_matches_transformers:
            pytest.skip("the backend declares greedy_matches_transformers = False")
        import torch

        from alignkit.core.lm import cut_at_stop

        eos = model.tokenizer.eos_token_id
        out = self._generate(generator, model, self.prompt_ids)
        for i, prompt in enumerate(self.prompt_ids):
            with torch.no_grad():
                reference = model.model.generate(torch.tensor([list(prompt)]), do_sample=False,
                                                  max_new_tokens=self.max_new_tokens, eos_token_id=eos,
                                                  pad_token_id=eos)[0, len(prompt):].tolist()
            assert cut_at_stop(out[i], [eos])[0] == cut_at_stop(reference, [eos])[0], \
                f"prompt {i}: greedy tokens differ from transformers' generate (padding or position bug?)"
