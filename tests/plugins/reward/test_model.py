"""The reward model itself: built from a causal LM, packed scoring equals transformers' own
forward, and a saved model scores the same after loading."""

from __future__ import annotations

import json

import pytest
import torch

from alignkit.core import ConfigError
from alignkit.plugins.reward.bradley_terry import (
    METADATA,
    RewardModel,
    encode,
    from_causal_lm,
    save_reward_model,
    sequence_rewards,
)

PROMPTS = [[{"role": "user", "content": "What is 2 + 2?"}], "Name a colour.",
           [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]]
RESPONSES = ["4", "Blue, or perhaps a deep shade of green if you ask me on a Tuesday.", "Hello!"]


@pytest.fixture
def reward_model(tiny_model):
    return from_causal_lm(tiny_model.model, tiny_model.tokenizer, heads=3, seed=0).eval()


def test_backbone_is_the_policys_and_the_global_rng_is_untouched(tiny_model, reward_model):
    lm = tiny_model.model
    for name, value in lm.model.state_dict().items():
        assert torch.equal(value, reward_model.model.state_dict()[name]), name
    assert reward_model.score.weight.shape == (3, lm.config.hidden_size)
    assert reward_model.config.pad_token_id == tiny_model.tokenizer.pad_token_id
    state = torch.random.get_rng_state()
    again = from_causal_lm(lm, tiny_model.tokenizer, heads=3, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(again.score.weight, reward_model.score.weight), "the head is drawn from the seed"
    other = from_causal_lm(lm, tiny_model.tokenizer, heads=3, seed=1)
    assert not torch.equal(other.score.weight, reward_model.score.weight)


def test_packed_rewards_equal_the_padded_transformers_forward(tiny_model, reward_model):
    tok = tiny_model.tokenizer
    seqs = [encode(tok, p, r, 96) for p, r in zip(PROMPTS, RESPONSES)]
    with torch.no_grad():
        packed = sequence_rewards(reward_model, seqs, tok.pad_token_id)
        width = max(len(s.input_ids) for s in seqs)
        ids = torch.full((len(seqs), width), tok.pad_token_id)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, : len(s.input_ids)] = torch.tensor(s.input_ids)
            mask[i, : len(s.input_ids)] = 1
        padded = reward_model(input_ids=ids, attention_mask=mask).logits
    assert packed.shape == (3, 3)
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=1e-5)
    assert packed[:, 0].unique().numel() == 3, "different texts get different rewards"


def test_score_is_the_same_after_save_and_load(tmp_path, tiny_model, reward_model):
    tok = tiny_model.tokenizer
    live = RewardModel(reward_model, tok, max_length=96, batch_size=2, uncertainty_penalty=0.5)
    before_heads = live.score_heads(PROMPTS, RESPONSES)
    before = live.score(PROMPTS, RESPONSES)
    torch.testing.assert_close(before, before_heads.mean(1) - 0.5 * before_heads.std(1))
    stats = {"mean": 0.25, "std": 2.0}
    save_reward_model(reward_model, tok, tmp_path / "rm", {"heads": 3, "max_length": 96, "reward_stats": stats})
    assert json.loads((tmp_path / "rm" / METADATA).read_text())["heads"] == 3
    assert not list(tmp_path.glob(".rm.*")), "no temporary folder is left behind"
    loaded = RewardModel.from_pretrained(tmp_path / "rm", device="cpu", uncertainty_penalty=0.5)
    assert (loaded.heads, loaded.max_length, loaded.path) == (3, 96, tmp_path / "rm")
    torch.testing.assert_close(loaded.score_heads(PROMPTS, RESPONSES), before_heads, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(loaded.score(PROMPTS, RESPONSES), before, atol=1e-6, rtol=1e-6)
    normalized = RewardModel.from_pretrained(tmp_path / "rm", device="cpu", normalize=True)
    torch.testing.assert_close(normalized.score(PROMPTS, RESPONSES), (before_heads.mean(1) - 0.25) / 2.0,
                               atol=1e-6, rtol=1e-6)
    # a bare string prompt is one user turn
    torch.testing.assert_close(loaded.score(["Name a colour."], [RESPONSES[1]]),
                               loaded.score([[{"role": "user", "content": "Name a colour."}]], [RESPONSES[1]]))
    assert loaded.score([], []).shape == (0,)
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        loaded.score(PROMPTS[:2], RESPONSES[:1])


def test_loading_something_that_is_not_a_reward_model_fails_clearly(tmp_path, tiny_model):
    tiny_model.model.save_pretrained(tmp_path / "lm")
    with pytest.raises(ConfigError, match="not a sequence-classification reward model"):
        RewardModel.from_pretrained(tmp_path / "lm")
    with pytest.raises(ConfigError, match="no config.json"):
        RewardModel.from_pretrained(tmp_path / "nowhere")


def test_a_saved_model_without_statistics_cannot_normalize(tmp_path, tiny_model, reward_model):
    save_reward_model(reward_model, tiny_model.tokenizer, tmp_path / "rm", {"heads": 3})
    with pytest.raises(ConfigError, match="normalize=true needs reward statistics"):
        RewardModel.from_pretrained(tmp_path / "rm", normalize=True)


def test_a_long_multi_turn_prompt_keeps_the_response(tiny_model):
    """HH-style dialogues: earlier assistant turns are context; truncation drops the prompt's start."""
    tok = tiny_model.tokenizer
    prompt = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! " * 150},
              {"role": "user", "content": "Which colour is the sky?"}]
    a, b = encode(tok, prompt, "Blue.", 64), encode(tok, prompt, "Green, I believe.", 64)
    assert len(a.input_ids) == 64 and a.input_ids != b.input_ids
    assert tok.decode([t for t, s in zip(a.input_ids, a.scored) if s]).startswith("Blue.")
    assert tok.decode(a.input_ids).endswith("Blue.<|im_end|>\n")
