"""Registers the built-in generation backends (``generation=transformers|kv|vllm``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignkit.core import GeneratorEntry, hookimpl
from alignkit.core.decoding import DEFAULT_BATCH_TOKENS, KVGenerator
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


def options_of(cfg: Any, schema: type, name: str) -> dict[str, Any]:
    """The config node as keyword arguments of ``schema``, checked as any component's config is."""
    from omegaconf import OmegaConf

    from alignkit.core.pipeline import validate_config

    data = OmegaConf.to_container(validate_config("generation", name, schema, cfg), resolve=True)
    data.pop("name", None)
    return data


def transformers_generator(cfg: Any = None) -> TransformersGenerator:
    return TransformersGenerator(**options_of(cfg, TransformersGeneratorConfig, "transformers"))


def kv_generator(cfg: Any = None) -> KVGenerator:
    from alignkit.core.errors import ConfigError

    options = KVGeneratorConfig(**options_of(cfg, KVGeneratorConfig, "kv"))
    if options.batch_tokens < 1:
        raise ConfigError(f"generation.batch_tokens must be a positive number of tokens, not {options.batch_tokens}")
    return KVGenerator(batch_tokens=options.batch_tokens, drop_finished=options.drop_finished)


def _vllm(cfg: Any = None) -> Any:
    from alignkit.plugins.generation.vllm_backend import vllm_generator

    return vllm_generator(cfg)


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
