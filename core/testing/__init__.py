"""Opt-in pytest plugin for alignkit and plugin authors: ``pytest_plugins = ["alignkit.core.testing"]``.

Fixtures:
  plugin_manager   a fresh plugin manager with the built-ins, installed plugins and ``extra_plugins``
  extra_plugins    override in your conftest to register plugin modules that are not installed
  registry         a ``Registry`` over it
  compose_config   compose ``alignkit.conf`` (plus plugin config roots) with overrides
  stage_context    a ``StageContext`` for a composed config, without running anything
  tiny_model       the ``tiny-random`` model and tokenizer
  run_alignkit     run a pipeline in-process into a temporary run directory

``StopAt(stage, step)``: a plugin that kills a run after a step, for resume tests.

Contract suites a component author subclasses (``class TestMine(FeedbackProviderContract):
name = "mine"``), one per kind ``alignkit plugin new --kind`` writes: ``FeedbackProviderContract``,
``PreferenceModelContract``, ``DataSourceContract``, ``GeneratorContract``, ``OptimizerContract``;
and for on-policy RL's parts (pure functions, no config): ``AdvantageEstimatorContract``,
``PolicyLossContract``.
Their class-scoped fixtures are classmethods (pytest 9 deprecates instance-method ones; pytest 10
removes them): override one as ``@pytest.fixture(scope="class")`` over ``@classmethod``.

A module per family: ``helpers`` (compose, stage contexts, the tiny model), ``fixtures``, ``data``
(``CONTRACT_PAIRS``), ``components`` (what every contract shares), ``feedback``,
``preference_models``, ``data_sources``, ``generators``, ``optimizers``, ``rl_parts``. Import
from ``alignkit.core.testing`` itself: the layout may change, these names will not.
"""

from alignkit.core.testing.data import CONTRACT_PAIRS, write_contract_data
from alignkit.core.testing.data_sources import DATA_KINDS, ROLES, SPLITS, DataSourceContract
from alignkit.core.testing.feedback import FeedbackProviderContract
from alignkit.core.testing.fixtures import (  # pytest finds fixtures among this module's names
    StopAt,
    _forget_the_hydra_job,  # noqa: F401  (autouse)
    compose_config,
    extra_plugins,
    plugin_manager,
    registry,
    run_alignkit,
    stage_context,
    tiny_model,
)
from alignkit.core.testing.generators import GeneratorContract
from alignkit.core.testing.helpers import (
    EVALUATE_FAST,
    FAST_OVERRIDES,
    compose,
    load_tiny_model,
    make_stage_context,
    registry_with,
    with_plugins,
)
from alignkit.core.testing.optimizers import OptimizerContract
from alignkit.core.testing.preference_models import PreferenceModelContract
from alignkit.core.testing.rl_parts import AdvantageEstimatorContract, PolicyLossContract

__all__ = [
    "CONTRACT_PAIRS", "DATA_KINDS", "EVALUATE_FAST", "FAST_OVERRIDES", "ROLES", "SPLITS",
    "AdvantageEstimatorContract", "DataSourceContract", "FeedbackProviderContract", "GeneratorContract",
    "OptimizerContract", "PolicyLossContract", "PreferenceModelContract", "StopAt",
    "compose", "compose_config", "extra_plugins", "load_tiny_model", "make_stage_context", "plugin_manager",
    "registry", "registry_with", "run_alignkit", "stage_context", "tiny_model", "with_plugins",
    "write_contract_data",
]
