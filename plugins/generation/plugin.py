"""Registers the built-in generation backends (``generation=transformers|vllm``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignkit.core import GeneratorEntry, hookimpl
from alignkit.core.lm import TransformersGenerator


@dataclass
class TransformersGeneratorConfig:
    """Options of ``generation=transformers`` (conf/generation/transformers.yaml)."""

    batch_size: int = 0   # prompts per model.generate call; 0: each caller's own batches unsplit


def options_of(cfg: Any, schema: type, name: str) -> dict[str, Any]:
    """The config node as keyword arguments of ``schema``, checked as any component's config is."""
    from omegaconf import OmegaConf

    from alignkit.core.pipeline import validate_config

    data = OmegaConf.to_container(validate_config("generation", name, schema, cfg), resolve=True)
    data.pop("name", None)
    return data


def transformers_generator(cfg: Any = None) -> TransformersGenerator:
    return TransformersGenerator(**options_of(cfg, TransformersGeneratorConfig, "transformers"))


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
    yield GeneratorEntry(name="vllm", factory=_vllm, config_schema=_vllm_schema(),
                         description="vLLM engine colocated with the policy (extra alignkit[vllm], CUDA); "
                                     "falls back to transformers where it cannot run")
