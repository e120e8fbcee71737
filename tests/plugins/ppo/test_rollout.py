"""Rollouts and the packed actor-critic forward, on tiny-random."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

import alignkit.plugins.data.demo as demo_pkg
from alignkit.core.lm import pack
from alignkit.plugins.rl.actor_critic import ActorCritic, critic_from_policy, reference_logprobs, value_head
from alignkit.plugins.rl.prompts import prompt_indices
from alignkit.plugins.rl.rollout import encode_prompts, generate, response_mask, stop_token_ids

PROMPTS = [json.loads(line)["prompt"] for line in
           (Path(demo_pkg.__file__).parent / "prompts.jsonl").read_text().splitlines()]


def test_prompt_indices_are_a_deterministic_stream_of_shuffles():
    first = [prompt_indices(10, 4, seed=1, step=s) for s in range(5)]
    assert first == [prompt_indices(10, 4, seed=1, step=s) for s in range(5)]
    stream = [i for batch in first for i in batch]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert len(prompt_indices(3, 7, seed=0, step=2)) == 7  # fewer prompts than a batch: they repeat


def test_generate_is_seeded_and_marks_eos_and_truncation(tiny_model):
    model, tok = tiny_model.model, tiny_model.tokenizer
    pool, dropped = encode_prompts(tok, PROMPTS[:6] + [[{"role": "user", "content": "x " * 400}]], 64)
    assert dropped == 1 and len(pool) == 6
    a = generate(model, tok, pool, [0, 1, 2, 3, 4, 5], max_new_tokens=5, temperature=1.0, seed=3, batch_size=4)
    b = generate(model, tok, pool, [0, 1, 2, 3, 4, 5], max_new_tokens=5, temperature=1.0, seed=3, batch_size=4)
    assert [s.input_ids for s in a.sequences] == [s.input_ids for s in b.sequences]
    stops = stop_token_ids(model, tok)
    for seq, length, cut in zip(a.sequences, a.response_lengths.tolist(), a.truncated.tolist()):
        response = [t for t, scored in zip(seq.input_ids, seq.scored) if scored]
        assert len(response) == length and 1 <= length <= 5
        assert cut == (response[-1] not in stops)
        assert not any(t in stops for t in response[:-1])
    # greedy decoding with a forced EOS: teach nothing, just bias the head so EOS wins
    with torch.no_grad():
        bias = torch.zeros(model.config.vocab_size)
        bias[tok.eos_token_id] = 1e4
        head = model.get_output_embeddings()
        original = head.forward
        head.forward = lambda x: original(x) + bias
        try:
            c = generate(model, tok, pool, [0, 1], max_new_tokens=5, temperature=0.0)
        finally:
            head.forward = original
    assert c.response_lengths.tolist() == [1, 1] and c.truncated.tolist() == [False, False]
    assert c.responses == ["", ""]
    assert response_mask(torch.tensor([2, 3])).tolist() == [[1, 1, 0], [1, 1, 1]]


def test_each_rollout_logs_its_totals_at_debug_without_a_bar(tiny_model, caplog, capsys):
    import logging

    model, tok = tiny_model.model, tiny_model.tokenizer
    pool, _ = encode_prompts(tok, PROMPTS[:3], 64)
    caplog.set_level(logging.DEBUG, logger="alignkit")
    rollout = generate(model, tok, pool, [0, 1, 2], max_new_tokens=4, seed=0, batch_size=2)
    [record] = [r for r in caplog.records if r.getMessage().startswith("rollout: ")]
    assert record.levelno == logging.DEBUG
    assert record.getMessage().startswith(f"rollout: 3 samples, {int(rollout.response_lengths.sum())} new tokens in ")
    assert capsys.readouterr().err == ""  # one bar per PPO step would crowd out the stage's own


def test_packed_forward_matches_a_padded_forward(tiny_model):
    model, tok = tiny_model.model, tiny_model.tokenizer
    pool, _ = encode_prompts(tok, PROMPTS[:5], 64)
    rollout = generate(model, tok, pool, list(range(5)), max_new_tokens=6, seed=0)
    mask = response_mask(rollout.response_lengths)
    temperature = 0.7
    ac = ActorCritic(model, critic=critic_from_policy(model))
    with torch.no_grad():
        out = ac(pack(rollout.sequences), mask, temperature, with_values=True, with_entropy=True)
        assert out.values.abs().max() == 0  # a fresh value head starts at zero
        ref = reference_logprobs(model, rollout.sequences, mask, temperature)
        assert torch.allclose(out.logprobs, ref)
        for row, seq in enumerate(rollout.sequences):
            ids = torch.tensor([seq.input_ids])
            logits = model(input_ids=ids).logits[0].float() / temperature
            start = seq.scored.index(True)
            targets = ids[0, start:]
            log_p = torch.log_softmax(logits[start - 1:-1], dim=-1)
            expected = log_p.gather(1, targets[:, None])[:, 0]
            n = len(targets)
            assert torch.allclose(out.logprobs[row, :n], expected, atol=1e-4)
            assert torch.allclose(out.entropy[row, :n], -(log_p.exp() * log_p).sum(-1), atol=1e-3)
            assert out.logprobs[row, n:].abs().sum() == 0
    shared = ActorCritic(model, shared_head=value_head(model.config.hidden_size))
    with torch.no_grad():
        shared.shared_head.bias.fill_(0.5)
        values = shared(pack(rollout.sequences), mask).values
    assert torch.allclose(values, 0.5 * mask)
    # gradients reach the policy through the packed forward
    loss = ac(pack(rollout.sequences), mask, temperature).logprobs.sum()
    loss.backward()
    assert model.get_input_embeddings().weight.grad is not None
    model.zero_grad(set_to_none=True)
    _ = F


def test_critic_from_a_reward_model_keeps_its_backbone_and_mean_head(tiny_model):
    from transformers import AutoModelForSequenceClassification

    from alignkit.plugins.rl.actor_critic import critic_from_reward_model

    config = tiny_model.model.config.__class__(**{**tiny_model.model.config.to_dict(), "num_labels": 2})
    torch.manual_seed(0)
    rm = AutoModelForSequenceClassification.from_config(config)  # an ensemble of two heads
    critic = critic_from_reward_model(rm)
    assert critic.backbone is rm.model
    assert torch.allclose(critic.head.weight[0], rm.score.weight.mean(0))
    # the critic's value at a sequence's last token is the ensemble's mean reward
    seq = [1, 2, 3, 4, 5]
    from alignkit.core.lm import Encoded

    batch = pack([Encoded(seq + [6], [False] * 5 + [True])])
    with torch.no_grad():
        value = critic(batch)
        reward = rm(input_ids=torch.tensor([seq])).logits.mean()
    assert torch.allclose(value, reward.reshape(1), atol=1e-5)


def test_sampling_draws_from_the_whole_distribution(tiny_model):
    """transformers' default top-k (50) must not apply: PPO's log-probs are of the full softmax."""
    model, tok = tiny_model.model, tiny_model.tokenizer
    pool, _ = encode_prompts(tok, PROMPTS[:1], 64)
    rollout = generate(model, tok, pool, [0] * 16, max_new_tokens=1, temperature=1.0, seed=0)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([pool.token_ids[0]])).logits[0, -1]
    rank = {int(t): i for i, t in enumerate(torch.argsort(logits, descending=True))}
    sampled = [rank[s.input_ids[-1]] for s in rollout.sequences]
    assert max(sampled) > 1000  # near-uniform over 49k tokens: top-50 sampling would never get here
