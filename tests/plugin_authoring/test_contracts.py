"""The author fixtures and a contract suite with a plugin that is not installed: the example
plugin's ``keyword`` provider, in-process. The built-in components' suites are in tests/contracts/."""

import sys
from pathlib import Path

import pytest

from alignkit.core.testing import FeedbackProviderContract

EXAMPLE = Path(__file__).parents[2] / "examples" / "alignkit-kto"


def _example_plugin():
    if str(EXAMPLE) not in sys.path:
        sys.path.append(str(EXAMPLE))  # appended: it never shadows an installed package
    import alignkit_kto.plugin

    return alignkit_kto.plugin


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
