"""Plugin loading: built-ins through the entry-point group, third-party dist-info, blocking, clashes."""

import sys
from importlib.metadata import Distribution, EntryPoint
from pathlib import Path

import pytest

from alignkit.core import OptimizerEntry, PluginError, hookimpl
from alignkit.core.manager import get_plugin_manager
from alignkit.core.registry import Registry
from alignkit.plugins import BUILTIN_PLUGINS

FAKE = Path(__file__).parents[1] / "fixtures" / "fake_plugin"


@pytest.fixture
def fake_entry_points(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKE))
    dist = Distribution.at(FAKE / "alignkit_fake-0.1.dist-info")
    yield list(dist.entry_points)
    for name in [m for m in sys.modules if m.startswith("alignkit_fake")]:
        del sys.modules[name]


def test_builtins_are_registered_by_name():
    pm = get_plugin_manager()
    names = {name for name, _ in pm.list_name_plugin()}
    assert {name for name, _ in BUILTIN_PLUGINS} <= names


def test_builtins_are_declared_in_the_entry_point_group():
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    declared = pyproject["project"]["entry-points"]["alignkit"]
    assert declared == dict(BUILTIN_PLUGINS)


def test_third_party_dist_info_is_loaded_with_its_package_name(fake_entry_points):
    reg = Registry(get_plugin_manager(fake_entry_points))
    found = reg.components("optimizer")["fake_opt"]
    assert found.package == "alignkit-fake"
    assert found.plugin_name == "fake"
    assert "pkg://alignkit_fake.conf" in reg.config_searchpath()


def test_disable_plugins_blocks_by_name(monkeypatch, fake_entry_points):
    monkeypatch.setenv("ALIGNKIT_DISABLE_PLUGINS", "fake,dpo")
    reg = Registry(get_plugin_manager(fake_entry_points))
    assert "fake_opt" not in reg.components("optimizer")
    assert "dpo" not in reg.components("optimizer")
    assert "sft" in reg.components("optimizer")


def test_broken_plugin_names_itself():
    ep = EntryPoint(name="broken", value="alignkit_no_such_module.plugin", group="alignkit")
    with pytest.raises(PluginError, match="plugin 'broken'.*failed to load"):
        get_plugin_manager([ep], strict=True)  # default: warn and skip (tests/plugin_authoring)


def test_component_name_clash_names_both_providers():
    class Clash:
        @hookimpl
        def alignkit_optimizers(self):
            yield OptimizerEntry(name="sft", factory=object, description="clash")

    pm = get_plugin_manager()
    pm.register(Clash(), name="clashing-plugin")
    with pytest.raises(PluginError) as info:
        Registry(pm).components("optimizer")
    message = str(info.value)
    assert "'sft' is registered twice" in message
    assert "plugin 'sft'" in message and "plugin 'clashing-plugin'" in message


def test_unknown_name_lists_available_and_suggests(registry):
    from alignkit.core import ConfigError

    with pytest.raises(ConfigError, match=r"unknown optimizer 'dpoo'.*sft.*Did you mean 'dpo'"):
        registry.get("optimizer", "dpoo")


def test_entry_names_are_normalised_and_checked():
    assert OptimizerEntry(name=" My_Opt ", factory=object).name == "my_opt"
    with pytest.raises(ValueError, match="invalid optimizer name"):
        OptimizerEntry(name="bad name!", factory=object)


def test_trace_hooks_writes_calls(monkeypatch, capsys):
    monkeypatch.setenv("ALIGNKIT_TRACE_HOOKS", "1")
    Registry(get_plugin_manager()).components("logger")
    assert "alignkit_loggers" in capsys.readouterr().err
