"""Registers the built-in generation backends (``generation=transformers|kv|vllm``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alignkit.core import GeneratorEntry, hookimpl
from alignkit.core.batch_tokens import DEFAULT_BATCH_TOKENS

if TYPE_CHECKING:  # both import torch: only a run that samples pays for it, not every plugin load
    from alignkit.core.decoding import KVGenerator
    from alignkit.core.lm import TransformersGenerator


@dataclass
class TransformersGeneratorConfig:
    """Options of ``generation=transformers`` (conf/generation/transformers.yaml)."""

    batch_size: int = 0   # prompts per model.generate call; 0: each caller's own batches unsplit


@dataclass
class KVGeneratorConfig:
    """Options of ``generation=kv`` (conf/generation/kv.yaml; core/decoding.py)."""

    batch_tokens: int = DEFAULT_BATCH_TOKENS  # rows x (longest prompt + max_new_tokens) per batch
    drop_finished: bool = True                # a row that stopped leaves the batch and its cache at once


def transformers_generator(options: TransformersGeneratorConfig, ctx: Any = None) -> TransformersGenerator:
    """factory(options, ctx): ``ctx`` is the RunContext (a backend serves every stage of the run)."""
    from alignkit.core.lm import TransformersGenerator

    return TransformersGenerator(batch_size=options.batch_size)


def kv_generator(options: KVGeneratorConfig, ctx: Any = None) -> KVGenerator:
    from alignkit.core.decoding import KVGenerator
    from alignkit.core.errors import ConfigError

    if options.batch_tokens < 1:
        raise ConfigError(f"generation.batch_tokens must be a positive number of tokens, not {options.batch_tokens}")
    return KVGenerator(batch_tokens=options.batch_tokens, drop_finished=options.drop_finished)


def _vllm(options: Any, ctx: Any = None) -> Any:
    from alignkit.plugins.generation.vllm_backend import vllm_generator

    return vllm_generator(options, ctx)


def _vllm_schema() -> type:
    from alignkit.plugins.generation.vllm_backend import VLLMGeneratorConfig

    return VLLMGeneratorConfig


@hookimpl
def alignkit_generators():
    yield GeneratorEntry(name="transformers", factory=transformers_generator, config_schema=TransformersGeneratorConfig,
                         description="transformers model.generate: KV-cached, batched, any device")
    yield GeneratorEntry(name="kv", factory=kv_generator, config_schema=KVGeneratorConfig,
                         description="alignkit's own KV-cached sampling loop: inverse-CDF sampling, finished rows "
                                     "dropped, batches of similar-length prompts by a token budget")
    yield GeneratorEntry(name="vllm", factory=_vllm, config_schema=_vllm_schema(),
                         description="vLLM engine colocated with the policy (extra alignkit[vllm], CUDA); "
                                     "falls back to transformers where it cannot run")
