"""``alignkit.core.testing`` is a package of a module per contract family; what authors import from
it and what its pytest plugin does stay as they were when it was one file."""

import importlib

from hydra.core.hydra_config import HydraConfig

import alignkit.core.testing as testing
from alignkit.core.testing import compose

PUBLIC = {
    "helpers": ["EVALUATE_FAST", "FAST_OVERRIDES", "compose", "load_tiny_model", "make_stage_context",
                "registry_with", "with_plugins"],
    "fixtures": ["StopAt", "compose_config", "extra_plugins", "plugin_manager", "registry", "run_alignkit",
                 "stage_context", "tiny_model"],
    "data": ["CONTRACT_PAIRS", "write_contract_data"],
    "feedback": ["FeedbackProviderContract"],
    "preference_models": ["PreferenceModelContract"],
    "data_sources": ["DATA_KINDS", "ROLES", "SPLITS", "DataSourceContract"],
    "generators": ["GeneratorContract"],
    "optimizers": ["OptimizerContract"],
    "rl_parts": ["AdvantageEstimatorContract", "PolicyLossContract"],
}
"""Every public name of the one-file ``core/testing.py``, by the module that now holds it."""


def test_every_public_name_is_importable_from_the_package():
    for module, names in PUBLIC.items():
        family = importlib.import_module(f"alignkit.core.testing.{module}")
        for name in names:
            assert getattr(testing, name) is getattr(family, name), f"alignkit.core.testing.{name}"
    assert sorted(testing.__all__) == sorted(n for names in PUBLIC.values() for n in names)


def test_compose_records_its_hydra_job():
    compose(["pipeline=sft"])
    assert HydraConfig.initialized(), "compose records the job as @hydra.main does"


def test_the_plugin_forgets_the_hydra_job_after_each_test():
    """Runs after the test above: the autouse fixture the package brings has reset ``HydraConfig``."""
    assert not HydraConfig.initialized(), "the recorded job leaked into the next test"
