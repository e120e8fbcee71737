"""Meta-tests of the contract: every hook spec has an example, is read by the registry (a plugin
here registers one record through every registry hook) and is exercised by some test.

Adding a hook to core/hookspecs.py fails these until it has an ``Example::`` block, a record in
``ONE_RECORD_PER_REGISTRY_HOOK`` (for a registry hook) and a test of its own."""

import inspect
import re
from pathlib import Path

import pytest

from alignkit.core import (
    AdvantageEstimatorEntry,
    CommandEntry,
    DataSourceEntry,
    FeedbackProviderEntry,
    GeneratorEntry,
    LoggerEntry,
    OptimizerEntry,
    PolicyLossEntry,
    PreferenceModelEntry,
    StageEntry,
    hookimpl,
    hookspecs,
)
from alignkit.core.manager import get_plugin_manager
from alignkit.core.registry import Registry

TESTS = Path(__file__).parents[1]
HOOKS = sorted(name for name, fn in vars(hookspecs).items() if name.startswith("alignkit_") and callable(fn))


def _is_registry_hook(name: str) -> bool:
    """Takes nothing, is called for every plugin and returns records (``*Entry``)."""
    fn = getattr(hookspecs, name)
    opts = fn.alignkit_spec
    return (not inspect.signature(fn).parameters and not opts.get("firstresult") and not opts.get("historic")
            and "Entry" in str(inspect.signature(fn).return_annotation))


REGISTRY_HOOKS = [name for name in HOOKS if _is_registry_hook(name)]

ONE_RECORD_PER_REGISTRY_HOOK = {
    "alignkit_data_sources": ("data_source", DataSourceEntry(name="meta_data", factory=object)),
    "alignkit_feedback_providers": ("feedback_provider", FeedbackProviderEntry(name="meta_feedback", factory=object)),
    "alignkit_preference_models": ("preference_model", PreferenceModelEntry(name="meta_pm", factory=object)),
    "alignkit_optimizers": ("optimizer", OptimizerEntry(name="meta_opt", factory=object)),
    "alignkit_stages": ("stage", StageEntry(name="meta_stage", factory=object)),
    "alignkit_loggers": ("logger", LoggerEntry(name="meta_logger", factory=object)),
    "alignkit_generators": ("generator", GeneratorEntry(name="meta_gen", factory=object)),
    "alignkit_advantage_estimators": ("advantage_estimator", AdvantageEstimatorEntry(name="meta_adv", estimate=len)),
    "alignkit_policy_losses": ("policy_loss", PolicyLossEntry(name="meta_loss", loss=len)),
    "alignkit_commands": ("command", CommandEntry(name="meta-command", run=len)),
}


def test_the_registry_hooks_are_found():
    assert {"alignkit_data_sources", "alignkit_optimizers", "alignkit_commands"} <= set(REGISTRY_HOOKS)
    assert "alignkit_load_model" not in REGISTRY_HOOKS and "alignkit_config_searchpath" not in REGISTRY_HOOKS


def test_every_registry_hook_has_a_record_here():
    missing = sorted(set(REGISTRY_HOOKS) - set(ONE_RECORD_PER_REGISTRY_HOOK))
    assert not missing, f"add a record for {missing} to ONE_RECORD_PER_REGISTRY_HOOK"


def test_a_plugin_implementing_every_registry_hook_reaches_the_registry():
    plugin = type("EveryRegistryHook", (), {
        hook: hookimpl(lambda self, _record=record: [_record])
        for hook, (_, record) in ONE_RECORD_PER_REGISTRY_HOOK.items()})()
    pm = get_plugin_manager()
    pm.register(plugin, name="every-registry-hook")
    registry = Registry(pm)
    for hook, (kind, record) in ONE_RECORD_PER_REGISTRY_HOOK.items():
        found = registry.components(kind).get(record.name)
        assert found is not None and found.entry is record and found.plugin_name == "every-registry-hook", hook


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_spec_shows_an_example(hook):
    doc = getattr(hookspecs, hook).__doc__
    assert "Example::" in doc, f"{hook}'s docstring has no Example:: block (see alignkit_data_sources)"
    example = doc.split("Example::", 1)[1]
    assert "@hookimpl" in example and f"def {hook}(" in example, f"{hook}'s example does not implement it"


def _test_sources() -> dict[Path, str]:
    here = Path(__file__).resolve()
    return {p: p.read_text(encoding="utf-8") for p in TESTS.rglob("*.py") if p.resolve() != here}


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_spec_is_exercised_by_a_test(hook):
    """Some test (or a test fixture plugin) other than this file implements or calls the hook."""
    pattern = re.compile(rf"\b{hook}\b")
    users = [p for p, text in _test_sources().items() if pattern.search(text)]
    assert users, f"no test under tests/ exercises {hook}: add one that implements or calls it"
