"""A Bradley-Terry reward model trained once per session on ``tiny-random``, so the contract suites
of what scores with one (``preference_model=bradley_terry``, ``feedback=reward_model``, PPO) run
on a real artifact instead of skipping."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignkit.core.testing import EVALUATE_FAST, FAST_OVERRIDES, compose, write_contract_data

REWARD_TRAINING = ("trainer.max_steps=6", "trainer.learning_rate=3e-3", "trainer.warmup_ratio=0")
"""Six steps of two pairs at a high learning rate: enough to move the scores of the contract pairs."""


@pytest.fixture(scope="session")
def trained_reward_run(tmp_path_factory):
    """The run of ``pipeline=reward_model`` on the contract pairs: (RunDir, registry)."""
    from alignkit.core.pipeline import run_pipeline
    from alignkit.core.registry import Registry

    registry = Registry()
    folder = tmp_path_factory.mktemp("trained-reward-model")
    fast = [o for o in FAST_OVERRIDES if o not in EVALUATE_FAST]  # the pipeline has no evaluate stage
    cfg = compose([*fast, "pipeline=reward_model", *write_contract_data(folder / "data", ["preferences"]),
                   *REWARD_TRAINING], registry)
    return run_pipeline(cfg, folder / "run", registry), registry


@pytest.fixture(scope="session")
def trained_reward_model(trained_reward_run) -> Path:
    """The folder of the trained reward model (``preference_model.path=`` takes it)."""
    rd, _ = trained_reward_run
    return rd.path / rd.summary["stages"]["reward_model"]["artifacts"]["reward_model"]


class OnTheTrainedRewardModel:
    """A contract suite mixin: build the component (or run the optimizer) with
    ``preference_model=bradley_terry`` on the session's trained reward model."""

    @pytest.fixture(scope="class")
    @classmethod
    def contract_overrides(cls, trained_reward_model):
        return ("preference_model=bradley_terry", f"preference_model.path={trained_reward_model}")
