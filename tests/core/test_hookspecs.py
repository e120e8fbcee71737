"""The contract itself: every hook prefixed, typed, documented, in the docs, and implemented somewhere."""

import inspect
from pathlib import Path

import pytest

from alignkit.core import (
    AdvantageEstimatorEntry,
    ConfigError,
    OptimizerEntry,
    PluginError,
    PolicyLossEntry,
    hookimpl,
    hookspecs,
)
from alignkit.core.manager import get_plugin_manager
from alignkit.core.registry import Registry

HOOKS = [name for name, fn in vars(hookspecs).items() if name.startswith("alignkit_") and callable(fn)]
DOCS = Path(__file__).parents[2] / "docs" / "plugins" / "hooks.md"


def test_the_contract_has_the_extension_points():
    assert {
        "alignkit_data_sources", "alignkit_feedback_providers", "alignkit_preference_models",
        "alignkit_optimizers", "alignkit_loggers", "alignkit_config_searchpath", "alignkit_load_model",
        "alignkit_configure", "alignkit_before_run", "alignkit_after_step", "alignkit_after_stage",
        "alignkit_after_run", "alignkit_advantage_estimators", "alignkit_policy_losses",
    } <= set(HOOKS)


def test_every_hook_is_typed_and_documented():
    for name in HOOKS:
        fn = getattr(hookspecs, name)
        sig = inspect.signature(fn)
        assert sig.return_annotation is not inspect.Signature.empty, name
        for param in sig.parameters.values():
            assert param.annotation is not inspect.Parameter.empty, f"{name}({param.name})"
            assert f":param {param.name}:" in fn.__doc__, f"{name} does not document {param.name}"
        assert fn.__doc__ and "called" in fn.__doc__.lower(), f"{name} does not say when it is called"


def test_firstresult_hooks_say_so():
    fn = hookspecs.alignkit_load_model
    assert fn.alignkit_spec["firstresult"] is True
    assert "Stops at first non-None result" in fn.__doc__


def test_every_hook_is_in_the_reference_docs():
    text = DOCS.read_text()
    for name in HOOKS:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"`{name}({params})" in text, f"docs/plugins/hooks.md does not document {name}({params})"


def test_registry_hooks_show_an_example():
    for name in ("alignkit_data_sources", "alignkit_advantage_estimators", "alignkit_policy_losses"):
        doc = getattr(hookspecs, name).__doc__
        assert "Example::" in doc and "@hookimpl" in doc, name


def test_adding_the_rl_part_hooks_raised_the_minor_version():
    major, minor = (int(part) for part in hookspecs.ALIGNKIT_HOOKS_VERSION.split("."))
    assert (major, minor) >= (1, 1)


# -- the RL parts' registries: the same rules as every other kind ----------------------------

BUILTIN_ESTIMATORS = {"gae", "rloo", "grpo", "dr_grpo", "reinforce_pp", "best_vs_worst"}
BUILTIN_LOSSES = {"ppo_clip", "gspo", "reinforce", "dpo_pairwise"}


def test_the_builtin_rl_parts_are_registered_with_their_flags():
    reg = Registry()
    estimators, losses = reg.components("advantage_estimator"), reg.components("policy_loss")
    assert BUILTIN_ESTIMATORS <= set(estimators) and BUILTIN_LOSSES <= set(losses)
    assert {n for n in BUILTIN_ESTIMATORS if estimators[n].entry.needs_critic} == {"gae"}
    assert {n for n in BUILTIN_LOSSES if losses[n].entry.pairwise} == {"dpo_pairwise"}
    assert all(r.package == "alignkit" and r.entry.description for r in (*estimators.values(), *losses.values())
               if r.entry.name in BUILTIN_ESTIMATORS | BUILTIN_LOSSES)


@pytest.mark.parametrize(("hook", "kind", "entry"), [
    ("alignkit_advantage_estimators", "advantage_estimator", lambda: AdvantageEstimatorEntry("grpo", estimate=len)),
    ("alignkit_policy_losses", "policy_loss", lambda: PolicyLossEntry("ppo_clip", loss=len)),
])
def test_an_rl_part_name_clash_names_both_providers(hook, kind, entry):
    clash = type("Clash", (), {hook: hookimpl(lambda self: [entry()])})()
    pm = get_plugin_manager()
    pm.register(clash, name="clashing-plugin")
    with pytest.raises(PluginError) as info:
        Registry(pm).components(kind)
    message = str(info.value)
    assert f"{kind} '{entry().name}' is registered twice" in message
    assert "plugin 'rl_parts'" in message and "plugin 'clashing-plugin'" in message


@pytest.mark.parametrize(("kind", "typo", "suggestion"), [
    ("advantage_estimator", "grp0", "grpo"), ("policy_loss", "ppo_clp", "ppo_clip")])
def test_an_unknown_rl_part_lists_the_available_ones_and_suggests(kind, typo, suggestion):
    with pytest.raises(ConfigError, match=rf"unknown {kind} '{typo}'. Available: .*Did you mean '{suggestion}'"):
        Registry().get(kind, typo)


def test_an_rl_part_hook_must_return_its_own_records():
    class Wrong:
        @hookimpl
        def alignkit_policy_losses(self):
            yield OptimizerEntry(name="not_a_loss", factory=object)

    pm = get_plugin_manager()
    pm.register(Wrong(), name="wrong")
    with pytest.raises(PluginError, match="returned OptimizerEntry from alignkit_policy_losses; expected PolicyLossEntry"):
        Registry(pm).components("policy_loss")


def test_rl_part_names_are_normalised_and_checked():
    assert AdvantageEstimatorEntry(name=" Median_Baseline ", estimate=len).name == "median_baseline"
    with pytest.raises(ValueError, match="invalid policy_loss name"):
        PolicyLossEntry(name="bad name!", loss=len)
    with pytest.raises(Exception):  # frozen
        PolicyLossEntry(name="ok", loss=len).name = "other"


def test_alignkit_plugins_lists_the_rl_parts():
    import io

    from alignkit.core.cli import list_plugins

    out = io.StringIO()
    list_plugins(Registry(), out=out)
    lines = out.getvalue().splitlines()
    assert any(line.split()[:2] == ["advantage_estimator", "reinforce_pp"] for line in lines)
    assert any(line.split()[:2] == ["policy_loss", "gspo"] for line in lines)
