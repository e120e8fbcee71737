"""alignkit's contract suites run against every built-in feedback provider and preference model,
the demo data source and the transformers generator, in-process.

Every feedback provider and preference model registered when the tests are collected gets the
suite, so a new one is covered without editing this file. What scores with a trained reward model
(``bradley_terry``, ``reward_model``) runs on the one the session trains (conftest.py); one that
cannot be built from its shipped config alone (a server, ...) is skipped with the reason; what a
component declares about itself (a judge with position bias is not ``symmetric``) is in ``SETTINGS``.
"""

import inspect

import pytest

from alignkit.core import ConfigError
from alignkit.core.registry import Registry
from alignkit.core.testing import (
    DataSourceContract,
    FeedbackProviderContract,
    GeneratorContract,
    PreferenceModelContract,
)

from .conftest import OnTheTrainedRewardModel

ON_THE_TRAINED_REWARD_MODEL = "on the trained reward model"

SETTINGS = {
    # the data's own label: A is whatever the data says, so swapping A and B does not mirror it
    ("feedback_provider", "dataset"): {"symmetric": False, "overrides": ("feedback.unknown=tie",)},
    # an AI judge reads A first: position bias is real, and it samples
    ("feedback_provider", "constitution"): {"symmetric": False, "deterministic": False},
    ("feedback_provider", "human"): {"overrides": ("feedback.db=sqlite:///{tmp}/labels.db",)},
    ("feedback_provider", "rule"): {},
    # scores with preference_model=bradley_terry, the session's trained reward model
    ("feedback_provider", "reward_model"): {"uses": ON_THE_TRAINED_REWARD_MODEL},
    ("preference_model", "bradley_terry"): {"uses": ON_THE_TRAINED_REWARD_MODEL},
    ("preference_model", "rule"): {"overrides": ("preference_model.fn=alignkit.plugins.rules.demo:concise",)},
    # standardises each objective over the batch it is given (docs/plugins/hooks.md)
    ("preference_model", "composite"): {"batch_independent": False},
}
"""What a component declares about itself, and contract violations its owner has yet to fix
(strict xfail: the fix turns the test red until the entry is removed here)."""


def _buildable(contract):
    """Wrap the component fixture: a ConfigError while building means 'needs more config': skip."""

    class Buildable(contract):
        @classmethod
        def _build(cls, registry, tmp_path_factory, extra=()):
            try:
                return super()._build(registry, tmp_path_factory, extra)
            except ConfigError as exc:
                pytest.skip(f"{cls.kind} '{cls.name}' needs more than its shipped config: {exc}")

    return Buildable


def _generate(kind, contract):
    for name in sorted(Registry().components(kind)):
        settings = dict(SETTINGS.get((kind, name), {}))
        bases = (OnTheTrainedRewardModel,) if settings.pop("uses", None) == ON_THE_TRAINED_REWARD_MODEL else ()
        attrs = {"name": name, "__module__": __name__}
        for test, reason in settings.pop("known_failures", {}).items():
            inherited = getattr(contract, test)

            def known(self, *args, __test=inherited, **kwargs):
                return __test(self, *args, **kwargs)

            known.__signature__ = inspect.signature(inherited)
            attrs[test] = pytest.mark.xfail(reason=reason, strict=True)(known)
        title = "".join(part.capitalize() for part in name.replace("-", "_").split("_"))
        cls = type(f"Test{title}{contract.__name__}", (*bases, _buildable(contract)), {**attrs, **settings})
        globals()[cls.__name__] = cls


_generate("feedback_provider", FeedbackProviderContract)
_generate("preference_model", PreferenceModelContract)


def test_what_needs_a_reward_model_is_built_on_the_trained_one():
    """Neither skips for want of a reward model: both classes take it from the session fixture."""
    for title in ("TestRewardModelFeedbackProviderContract", "TestBradleyTerryPreferenceModelContract"):
        assert issubclass(globals()[title], OnTheTrainedRewardModel), title


class TestDemoIsADataSource(DataSourceContract):
    name = "demo"
    provides = ("sft", "preferences", "prompts")


class TestTransformersIsAGenerator(GeneratorContract):
    name = "transformers"


class TestTransformersInSmallBatchesIsAGenerator(GeneratorContract):
    name = "transformers"
    overrides = ("generation.batch_size=2",)  # three prompts: a batch of two, then one
