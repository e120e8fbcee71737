"""Opt-in pytest plugin for alignkit and plugin authors: ``pytest_plugins = ["alignkit.core.testing"]``.

Fixtures:
  plugin_manager   a fresh plugin manager with the built-ins and installed plugins
  registry         a ``Registry`` over it
  compose_config   compose ``alignkit.conf`` (plus plugin config roots) with overrides
  tiny_model       the ``tiny-random`` model and tokenizer
  run_alignkit     run a pipeline in-process into a temporary run directory
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import pytest

from alignkit.core.registry import Registry

FAST_OVERRIDES = (
    "model=tiny-random",
    "logger=none",
    "trainer.max_steps=2",
    "trainer.batch_size=2",
    "trainer.max_length=96",
    "trainer.progress=false",
    "trainer.checkpoint_every=0",
)


def compose(overrides: Sequence[str] = (), registry: Registry | None = None) -> Any:
    """Compose the alignkit config as the CLI would (plugin config roots on the search path)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from alignkit.core.cli import CONFIG_MODULE, CONFIG_NAME, rewrite_overrides

    reg = registry or Registry()
    args = rewrite_overrides(list(overrides), reg.config_searchpath())
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return hydra_compose(CONFIG_NAME, overrides=args)


@pytest.fixture
def plugin_manager():
    from alignkit.core.manager import get_plugin_manager

    return get_plugin_manager()


@pytest.fixture
def registry(plugin_manager) -> Registry:
    return Registry(plugin_manager)


@pytest.fixture
def compose_config(registry) -> Callable[..., Any]:
    def _compose(*overrides: str) -> Any:
        return compose(overrides, registry)

    return _compose


@pytest.fixture(scope="session")
def tiny_model():
    from alignkit.core.types import ModelSpec

    spec = ModelSpec("tiny-random", options={"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                                             "num_key_value_heads": 4, "intermediate_size": 256, "seed": 0})
    return Registry().load_model(spec, "policy")


@pytest.fixture
def run_alignkit(tmp_path: Path, registry) -> Callable[..., Any]:
    """``run_alignkit("pipeline=dpo", ...)`` runs in-process with fast defaults; returns the RunDir."""
    from alignkit.core.pipeline import run_pipeline

    def _run(*overrides: str, run_dir: Path | None = None, fast: bool = True) -> Any:
        cfg = compose([*(FAST_OVERRIDES if fast else ()), *overrides], registry)
        return run_pipeline(cfg, run_dir or tmp_path / "run", registry)

    return _run
