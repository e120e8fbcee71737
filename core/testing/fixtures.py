"""The pytest fixtures ``pytest_plugins = ["alignkit.core.testing"]`` brings (the package re-exports
them, which is how pytest finds them), and ``StopAt`` for resume tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytest

from alignkit.core.hookspecs import hookimpl
from alignkit.core.registry import Registry
from alignkit.core.testing.helpers import FAST_OVERRIDES, compose, load_tiny_model, make_stage_context, with_plugins


@pytest.fixture
def extra_plugins() -> Sequence[Any]:
    """Plugin modules or objects to register besides the installed ones (override it)."""
    return ()


@pytest.fixture
def plugin_manager(extra_plugins):
    from alignkit.core.manager import get_plugin_manager

    return with_plugins(get_plugin_manager(), extra_plugins)


@pytest.fixture(autouse=True)
def _forget_the_hydra_job() -> Iterator[None]:
    """``compose`` records its job in ``HydraConfig`` as ``@hydra.main`` does; forget it after each
    test, so a later test's relative paths are not resolved against an earlier test's folder
    (hydra.utils.to_absolute_path reads the recorded job's working directory)."""
    yield
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().cfg = None


@pytest.fixture
def registry(plugin_manager) -> Registry:
    return Registry(plugin_manager)


@pytest.fixture
def compose_config(registry) -> Callable[..., Any]:
    def _compose(*overrides: str) -> Any:
        return compose(overrides, registry)

    return _compose


@pytest.fixture
def stage_context(tmp_path: Path, registry) -> Callable[..., Any]:
    """``stage_context("feedback=mine").feedback()`` builds your provider as a stage would."""

    def _make(*overrides: str, fast: bool = True) -> Any:
        return make_stage_context(registry, tmp_path / "run", overrides, fast)

    return _make


@pytest.fixture(scope="session")
def tiny_model():
    return load_tiny_model()


@pytest.fixture
def run_alignkit(tmp_path: Path, registry) -> Callable[..., Any]:
    """``run_alignkit("pipeline=dpo", ...)`` runs in-process with fast defaults; returns the RunDir."""
    from alignkit.core.pipeline import run_pipeline

    def _run(*overrides: str, run_dir: Path | None = None, fast: bool = True) -> Any:
        cfg = compose([*(FAST_OVERRIDES if fast else ()), *overrides], registry)
        return run_pipeline(cfg, run_dir or tmp_path / "run", registry)

    return _run


class StopAt:
    """A plugin that kills a run in the after-step hook of ``stage`` at ``step``, as a crash
    mid-stage would: register it, expect ``StopAt.Killed``, unregister it and rerun the same
    command to test that the stage resumes from its newest checkpoint."""

    class Killed(Exception):
        pass

    def __init__(self, stage: str, step: int) -> None:
        self.stage, self.step = stage, step

    @hookimpl
    def alignkit_after_step(self, run: Any, stage: str, step: int, metrics: Any) -> None:
        if stage == self.stage and step == self.step:
            raise StopAt.Killed
