"""Registers the built-in generation backends (``generation=transformers|vllm``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from alignkit.core import ConfigError, GeneratorEntry, hookimpl
from alignkit.core.lm import TransformersGenerator


@dataclass
class TransformersGeneratorConfig:
    """Options of ``generation=transformers`` (conf/generation/transformers.yaml)."""

    batch_size: int = 0   # prompts per model.generate call; 0: each caller's own batches unsplit


def options_of(cfg: Any, schema: type, name: str) -> dict[str, Any]:
    """The config node as keyword arguments of ``schema`` (``name`` dropped; unknown keys are an error)."""
    if cfg is None:
        return {}
    from omegaconf import DictConfig, OmegaConf

    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    data.pop("name", None)
    allowed = {f.name for f in fields(schema)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"generation '{name}' has no option {', '.join(map(repr, unknown))}; "
                          f"its options are: {', '.join(sorted(allowed))}")
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
