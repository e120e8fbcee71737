"""Which generation backend the evaluate stage samples with (``evaluate.generation``): kv by default,
the run's backend when ``generation=`` names one, transformers for a model kv cannot drive."""

import pytest

from alignkit.core.decoding import KVGenerator
from alignkit.core.lm import TransformersGenerator
from alignkit.plugins.evaluation.evaluate import sampler_name


class WithLogitsToKeep:
    def forward(self, input_ids, logits_to_keep=0):  # what kv needs: the vocabulary at the last position only
        pass


class WithoutLogitsToKeep:
    def forward(self, input_ids, attention_mask=None):
        pass


@pytest.mark.parametrize("choice, run_backend, on_command_line, model, expected", [
    ("auto", "transformers", False, WithLogitsToKeep(), "kv"),  # the default run: kv's exact, faster draws
    ("auto", "transformers", True, WithLogitsToKeep(), "transformers"),  # generation=transformers asked for
    ("auto", "transformers", False, WithoutLogitsToKeep(), "transformers"),  # a model kv cannot drive
    ("auto", "kv", False, WithLogitsToKeep(), "kv"),
    ("auto", "vllm", True, WithLogitsToKeep(), "vllm"),  # the run's own backend, whatever it is
    ("auto", "my_backend", False, WithoutLogitsToKeep(), "my_backend"),
    ("transformers", "transformers", False, WithLogitsToKeep(), "transformers"),  # evaluate.generation=...
    ("kv", "vllm", True, WithLogitsToKeep(), "kv"),
])
def test_the_backend_evaluate_samples_with(choice, run_backend, on_command_line, model, expected):
    assert sampler_name(choice, run_backend, on_command_line, model) == expected


def _spy(monkeypatch, cls):
    calls = []
    original = cls.generate

    def generate(self, model, prompt_ids, **kwargs):
        calls.append(len(prompt_ids))
        return original(self, model, prompt_ids, **kwargs)

    monkeypatch.setattr(cls, "generate", generate)
    return calls


@pytest.mark.parametrize("overrides, used, unused", [
    ((), KVGenerator, TransformersGenerator),
    (("generation=transformers",), TransformersGenerator, KVGenerator),
])
@pytest.mark.slow  # a whole pipeline on the tiny model (over 3 s)
def test_the_evaluate_stage_samples_through_the_chosen_backend(run_alignkit, tmp_path, monkeypatch, overrides, used,
                                                               unused):
    used_calls, unused_calls = _spy(monkeypatch, used), _spy(monkeypatch, unused)
    rd = run_alignkit("pipeline=sft", "trainer.max_steps=1", *overrides)
    assert rd.summary["stages"]["evaluate"]["status"] == "completed"
    # policy and reference each answer 4 held-out + 2 safety + 2 sycophancy prompts (EVALUATE_FAST)
    assert sum(used_calls) == 2 * 8 and unused_calls == []
