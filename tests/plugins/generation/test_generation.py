"""Generation backends: stages sample with the configured one, a third-party backend plugs in,
``generation=vllm`` falls back to transformers where vLLM cannot run (CI), and the vLLM
backend's own logic (engine checkpoint, weight syncs, LoRA merging) holds against a stand-in of
vLLM's API (tests/fixtures/fake_vllm)."""

from __future__ import annotations

import copy
import json
import logging
import sys
from pathlib import Path

import pytest
import torch

import alignkit.plugins.data.demo as demo_pkg
from alignkit.core import ConfigError, GeneratorEntry, hookimpl
from alignkit.core.lm import TransformersGenerator, sample_responses
from alignkit.core.pipeline import run_pipeline
from alignkit.core.testing import FAST_OVERRIDES, compose, registry_with
from alignkit.plugins.generation import vllm_backend as V

DEMO = Path(demo_pkg.__file__).parent
FAKE_VLLM = Path(__file__).resolve().parents[2] / "fixtures" / "fake_vllm"


def lines(prompt, response):
    return min(response.count("\n"), 4) / 4


class Recording(TransformersGenerator):
    """transformers generate, counting the prompts each call samples for."""

    name = "recording"

    def __init__(self) -> None:
        super().__init__()
        self.prompts: list[int] = []

    def generate(self, model, prompt_ids, **kwargs):
        self.prompts.append(len(prompt_ids))
        return super().generate(model, prompt_ids, **kwargs)


RECORDING = Recording()


class RecordingPlugin:
    @hookimpl
    def alignkit_generators(self):
        yield GeneratorEntry(name="recording", factory=lambda options, ctx: RECORDING, description="test")


def grpo(registry, run_dir, *overrides):
    cfg = compose([*FAST_OVERRIDES, "pipeline=grpo", "data=files", f"data.prompts={DEMO / 'prompts.jsonl'}",
                   "preference_model=rule", f"preference_model.fn={__name__}:lines", "optimizer.eval_prompts=0",
                   "trainer.batch_size=4", "optimizer.samples_per_prompt=2", "optimizer.max_new_tokens=4",
                   "optimizer.sample_every=0", *overrides], registry)
    cfg.pipeline.stages = [s for s in cfg.pipeline.stages if s.get("stage") != "evaluate"]
    return run_pipeline(cfg, run_dir, registry)


def rewards(rd):
    rows = [json.loads(line) for line in (rd.path / "metrics.jsonl").read_text().splitlines()]
    return [(r["reward/mean"], r["rollout/response_length_mean"]) for r in rows if "reward/mean" in r]


@pytest.mark.slow  # a whole pipeline on the tiny model (over 3 s)
def test_stages_sample_with_a_plugin_generator(tmp_path):
    registry = registry_with([RecordingPlugin()])
    assert "recording" in registry.components("generator")
    RECORDING.prompts.clear()
    grpo(registry, tmp_path / "grpo", "generation.name=recording")
    assert RECORDING.prompts == [4, 4]  # each GRPO step's rollouts

    RECORDING.prompts.clear()
    cfg = compose([*FAST_OVERRIDES, "pipeline=rejection_sampling", "data=demo", "preference_model=rule",
                   f"preference_model.fn={__name__}:lines", "pipeline.rounds=1", "best_of_n.prompts=3",
                   "best_of_n.samples=2", "best_of_n.max_new_tokens=4", "best_of_n.batch_size=4",
                   "generation.name=recording"], registry)
    cfg.pipeline.stages = [s for s in cfg.pipeline.stages if s.get("stage") != "evaluate" and s.get("optimizer") != "sft"]
    run_pipeline(cfg, tmp_path / "best_of_n", registry)
    assert RECORDING.prompts == [4, 2]  # 3 prompts x 2 samples, in batches of 4


@pytest.mark.slow  # a whole pipeline on the tiny model (over 3 s)
def test_vllm_falls_back_to_transformers_where_it_cannot_run(registry, tmp_path, caplog):
    assert V.unavailable_reason() is not None  # CI: no vllm, no CUDA
    with caplog.at_level(logging.WARNING, logger="alignkit"):
        fallback = grpo(registry, tmp_path / "vllm", "generation=vllm")
    assert "sampling with transformers generate instead" in caplog.text
    plain = grpo(registry, tmp_path / "transformers", "generation=transformers")
    assert rewards(fallback) == rewards(plain) and len(rewards(plain)) == 2

    with pytest.raises(ConfigError, match="generation=vllm: vllm"):
        grpo(registry, tmp_path / "strict", "generation=vllm", "generation.fallback=error")
    with pytest.raises(ConfigError, match="has no option 'batch'"):
        grpo(registry, tmp_path / "typo", "generation=transformers", "+generation.batch=4")


def test_transformers_generator_batches_are_seeded_and_restore_the_rng(tiny_model):
    model, tok = tiny_model.model, tiny_model.tokenizer
    prompts = [[{"role": "user", "content": f"Count to {n}."}] for n in range(5)]
    state = torch.random.get_rng_state()
    a = sample_responses(model, tok, prompts, max_new_tokens=6, batch_size=2, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert [e.input_ids for e, _ in a] == [e.input_ids for e, _ in sample_responses(
        model, tok, prompts, max_new_tokens=6, batch_size=2, seed=7)]
    b = sample_responses(model, tok, prompts, max_new_tokens=6, batch_size=2, seed=7,
                         generator=TransformersGenerator(batch_size=1))  # the backend's own smaller batches
    for (x, _), (y, _) in zip(a, b):  # same prompts, each response scored and at most 6 tokens
        prompt = [t for t, scored in zip(x.input_ids, x.scored) if not scored]
        assert prompt == [t for t, scored in zip(y.input_ids, y.scored) if not scored]
        assert 1 <= sum(y.scored) <= 6
    c = sample_responses(model, tok, prompts, max_new_tokens=6, batch_size=2, seed=8)
    assert [e.input_ids for e, _ in a] != [e.input_ids for e, _ in c]


@pytest.fixture
def fake_vllm(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKE_VLLM))
    monkeypatch.setattr(V, "unavailable_reason", lambda: None)
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        monkeypatch.delitem(sys.modules, name)
    import vllm

    vllm.calls.clear()
    yield vllm
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        del sys.modules[name]  # the stand-in must not look like an installed vLLM to later tests


def greedy(generator, model, ids, max_new_tokens=6):
    return generator.generate(model, ids, max_new_tokens=max_new_tokens, temperature=0.0, top_p=1.0,
                              stop_ids=[], pad_id=0, seed=0)


def test_the_vllm_engine_follows_the_policys_weights(fake_vllm, tiny_model):
    model, tok = copy.deepcopy(tiny_model.model), tiny_model.tokenizer  # the fixture is shared: train a copy
    ids = [tok("What is 2 + 2?")["input_ids"], tok("Name a colour.")["input_ids"]]
    generator = V.vllm_generator(V.VLLMGeneratorConfig(gpu_memory_utilization=0.5))
    assert isinstance(generator, V.VLLMGenerator)
    hf = TransformersGenerator()
    before = greedy(hf, model, ids)
    assert greedy(generator, model, ids) == before
    assert greedy(generator, model, ids) == before
    assert fake_vllm.calls == ["init", "generate", "generate"]  # no sync while the weights are unchanged

    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
    out = model(input_ids=torch.tensor([ids[0]]), labels=torch.tensor([ids[0]]))
    out.loss.backward()
    optimizer.step()
    after = greedy(hf, model, ids)
    assert after != before  # the update changed what the policy says
    assert greedy(generator, model, ids) == after
    assert fake_vllm.calls[-3:] == ["load_weights", "reset_prefix_cache", "generate"]


def test_a_lora_policy_is_synced_merged_under_the_base_names(fake_vllm, tiny_model):
    from peft import LoraConfig, get_peft_model

    base_names = set(tiny_model.model.state_dict())
    model = get_peft_model(copy.deepcopy(tiny_model.model), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                        init_lora_weights=False))
    tok = tiny_model.tokenizer
    ids = [tok("What is 2 + 2?")["input_ids"]]
    names = {n for n, _ in V.named_weights(model)}
    assert names <= base_names and {n for n in base_names if "lm_head" not in n} <= names | {"lm_head.weight"}
    expected = greedy(TransformersGenerator(), model, ids)
    generator = V.vllm_generator(V.VLLMGeneratorConfig())
    assert greedy(generator, model, ids) == expected  # the adapter's effect reached the engine
    assert not any(getattr(m, "merged", False) for m in model.modules())  # unmerged afterwards
