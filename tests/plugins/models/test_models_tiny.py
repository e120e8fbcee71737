"""tiny-random: a small random Llama with SmolLM2's tokenizer and chat template."""

from __future__ import annotations

import time

import pytest
import torch

from alignkit.core import ConfigError, ModelSpec
from alignkit.plugins.models.plugin import alignkit_load_model
from alignkit.plugins.models.resolve import load_model

OPTIONS = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 4, "intermediate_size": 256, "seed": 0}


def test_tiny_random_loads_fast_with_chat_template():
    start = time.perf_counter()
    loaded = alignkit_load_model(ModelSpec("tiny-random", options=OPTIONS), "policy")
    elapsed = time.perf_counter() - start
    assert elapsed < 15, f"tiny-random took {elapsed:.1f}s"
    model, tok = loaded.model, loaded.tokenizer
    assert type(model).__name__ == "LlamaForCausalLM"
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size) == (64, 2, 4, 256)
    assert cfg.vocab_size == len(tok) == 49152
    assert cfg.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert cfg.max_position_embeddings == 2048 and tok.model_max_length == 2048
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 2)
    assert cfg.pad_token_id == 2 and cfg.eos_token_id == 2
    assert tok.padding_side == "right"
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], 49152) and torch.isfinite(logits).all()
    assert loaded.source.startswith("tiny-random:seed=0")


def test_tiny_random_is_deterministic_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = load_model(ModelSpec("tiny-random", options=OPTIONS)).model
    b = load_model(ModelSpec("tiny-random", options=OPTIONS)).model
    assert torch.equal(torch.rand(3), expected)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    c = load_model(ModelSpec("tiny-random", options={**OPTIONS, "seed": 1})).model
    assert not torch.equal(c.model.embed_tokens.weight, a.model.embed_tokens.weight)


def test_tiny_random_defaults_and_dtype():
    loaded = load_model(ModelSpec("tiny-random", dtype="bfloat16"))
    assert loaded.model.dtype == torch.bfloat16
    assert loaded.model.config.hidden_size == 64


@pytest.mark.parametrize("options, words", [
    ({"hidden_sise": 64}, "hidden_sise"),
    ({"hidden_size": 65}, "divisible"),
    ({"num_attention_heads": 4, "num_key_value_heads": 3}, "divisible"),
    ({"num_hidden_layers": 0}, "positive"),
])
def test_tiny_random_rejects_bad_options(options, words):
    with pytest.raises(ConfigError, match=words):
        load_model(ModelSpec("tiny-random", options=options))


def test_bad_dtype_is_a_config_error():
    with pytest.raises(ConfigError, match="dtype"):
        load_model(ModelSpec("tiny-random", dtype="float8"))
