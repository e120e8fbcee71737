"""``tiny-random``: a small random Llama with SmolLM2's tokenizer, for smoke runs and tests."""

from __future__ import annotations

from typing import Any, Mapping

from alignkit.core import ConfigError

TINY_DEFAULTS: dict[str, int] = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "intermediate_size": 256,
    "max_position_embeddings": 2048,
    "seed": 0,
}
"""Accepted ``model.options`` keys of ``tiny-random`` and their defaults."""

TINY_OPTIONAL = ("head_dim", "rope_theta")
"""Further accepted keys, passed to ``LlamaConfig`` when given."""


def tiny_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults overlaid with ``options``; unknown keys and bad sizes raise ConfigError."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(TINY_DEFAULTS) - set(TINY_OPTIONAL))
    if unknown:
        raise ConfigError(
            f"model 'tiny-random' does not accept option(s) {', '.join(unknown)}; accepted: "
            f"{', '.join(list(TINY_DEFAULTS) + list(TINY_OPTIONAL))}"
        )
    merged = {**TINY_DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    for key, value in merged.items():
        if key == "rope_theta":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or (value < 1 and key != "seed"):
            raise ConfigError(f"model 'tiny-random': option {key} must be a positive integer, got {value!r}")
    heads, kv_heads = merged["num_attention_heads"], merged["num_key_value_heads"]
    if "head_dim" not in merged and merged["hidden_size"] % heads:
        raise ConfigError(
            f"model 'tiny-random': hidden_size ({merged['hidden_size']}) must be divisible by "
            f"num_attention_heads ({heads})"
        )
    if heads % kv_heads:
        raise ConfigError(
            f"model 'tiny-random': num_attention_heads ({heads}) must be divisible by "
            f"num_key_value_heads ({kv_heads})"
        )
    return merged


def build_tiny_random(options: Mapping[str, Any] | None, tokenizer: Any, dtype: Any = None) -> Any:
    """A ``LlamaForCausalLM`` sized by ``options`` with weights drawn from ``seed``.

    The vocabulary is the tokenizer's (49152 for SmolLM2), embeddings are tied like
    SmolLM2's. The global torch RNG is left untouched.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    opts = tiny_options(options)
    seed = opts.pop("seed")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        **opts,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    if dtype is not None and dtype != "auto":
        model = model.to(dtype)
    model.config._name_or_path = "tiny-random"
    model.eval()  # like from_pretrained; trainers call .train()
    return model
