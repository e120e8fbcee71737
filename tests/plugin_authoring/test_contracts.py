"""alignkit's contract suites (``alignkit.core.testing``) run against the built-in components and
the example plugin's provider, in-process.

Every feedback provider and preference model registered when the tests are collected gets the
suite, so a new one is covered without editing this file. One that cannot be built from its
shipped config alone (it needs a trained reward model, a server, ...) is skipped with the
reason; what a component declares about itself (a judge with position bias is not
``symmetric``) is in ``SETTINGS``.
"""

import sys
from pathlib import Path

import pytest

from alignkit.core import ConfigError
from alignkit.core.registry import Registry
from alignkit.core.testing import (
    DataSourceContract,
    FeedbackProviderContract,
    GeneratorContract,
    OptimizerContract,
    PreferenceModelContract,
)

EXAMPLE = Path(__file__).parents[2] / "examples" / "alignkit-kto"

SETTINGS = {
    # the data's own label: A is whatever the data says, so swapping A and B does not mirror it
    ("feedback_provider", "dataset"): {"symmetric": False, "overrides": ("feedback.unknown=tie",)},
    # an AI judge reads A first: position bias is real, and it samples
    ("feedback_provider", "constitution"): {"symmetric": False, "deterministic": False},
    ("feedback_provider", "human"): {"overrides": ("feedback.db=sqlite:///{tmp}/labels.db",)},
    ("feedback_provider", "rule"): {},
    # standardises each objective over the batch it is given (docs/plugins/hooks.md)
    ("preference_model", "composite"): {"batch_independent": False},
}
"""What a component declares about itself, and contract violations its owner has yet to fix
(strict xfail: the fix turns the test red until the entry is removed here)."""


def _buildable(contract):
    """Wrap the component fixture: a ConfigError while building means 'needs more config': skip."""

    class Buildable(contract):
        @classmethod
        def _build(cls, registry, tmp_path_factory):
            try:
                return super()._build(registry, tmp_path_factory)
            except ConfigError as exc:
                pytest.skip(f"{cls.kind} '{cls.name}' needs more than its shipped config: {exc}")

    return Buildable


def _generate(kind, contract):
    for name in sorted(Registry().components(kind)):
        settings = dict(SETTINGS.get((kind, name), {}))
        attrs = {"name": name, "__module__": __name__}
        for test, reason in settings.pop("known_failures", {}).items():
            inherited = getattr(contract, test)

            def known(self, *args, __test=inherited, **kwargs):
                return __test(self, *args, **kwargs)

            known.__signature__ = __import__("inspect").signature(inherited)
            attrs[test] = pytest.mark.xfail(reason=reason, strict=True)(known)
        title = "".join(part.capitalize() for part in name.replace("-", "_").split("_"))
        cls = type(f"Test{title}{contract.__name__}", (_buildable(contract),), {**attrs, **settings})
        globals()[cls.__name__] = cls


_generate("feedback_provider", FeedbackProviderContract)
_generate("preference_model", PreferenceModelContract)


def _example_plugin():
    if str(EXAMPLE) not in sys.path:
        sys.path.append(str(EXAMPLE))  # appended: it never shadows an installed package
    import alignkit_kto.plugin

    return alignkit_kto.plugin


class TestDemoIsADataSource(DataSourceContract):
    name = "demo"
    provides = ("sft", "preferences", "prompts")


class TestTransformersIsAGenerator(GeneratorContract):
    name = "transformers"


class TestTransformersInSmallBatchesIsAGenerator(GeneratorContract):
    name = "transformers"
    overrides = ("generation.batch_size=2",)  # three prompts: a batch of two, then one


class TestDPOIsAnOptimizer(OptimizerContract):
    name = "dpo"
    overrides = ("optimizer.kl_prompts=0",)  # no prompts in the contract's data


class TestTheExamplesKeywordProvider(FeedbackProviderContract):
    name = "keyword"
    plugins = (_example_plugin(),)


@pytest.fixture
def extra_plugins():
    return (_example_plugin(),)


def test_extra_plugins_compose_and_build_a_plugin_that_is_not_installed(compose_config, registry, stage_context):
    """The author fixtures with a plugin module that is not pip-installed (``extra_plugins``)."""
    assert compose_config("optimizer=kto", "optimizer.beta=0.3").optimizer.beta == 0.3
    assert "kto" in registry.components("optimizer")
    judge = stage_context("feedback=keyword").feedback()
    assert judge.judge(["q"], ["fine"], ["Hmm, let me think."])[0].preferred == "a"
