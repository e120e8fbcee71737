"""Subcommands through the ``alignkit_commands`` hook: the built-ins, clashes, blocking, the old group."""

import sys
import warnings
from importlib.metadata import Distribution, EntryPoint
from pathlib import Path
from types import SimpleNamespace

import pytest

from alignkit.core import CommandEntry, PluginError, hookimpl
from alignkit.core.commands import LEGACY_GROUP, command_table, is_command_word
from alignkit.core.manager import get_plugin_manager
from alignkit.core.registry import Registry

FAKE = Path(__file__).parents[1] / "fixtures" / "fake_plugin"
BUILTIN = {"plugins": "core", "plugin": "core", "runs": "core", "resume": "core", "evaluate": "evaluation",
           "report": "evaluation", "label": "human", "data": "curation"}


@pytest.fixture
def fake(monkeypatch):
    """The checked-in third-party package: a hook command ``hello``, an old-group ``hello-legacy``."""
    monkeypatch.syspath_prepend(str(FAKE))
    dist = Distribution.at(FAKE / "alignkit_fake-0.1.dist-info")
    yield dist
    for name in [m for m in sys.modules if m.startswith("alignkit_fake")]:
        del sys.modules[name]


def _legacy(monkeypatch, eps):
    monkeypatch.setattr("alignkit.core.commands._legacy_entry_points", lambda: eps)


def test_every_builtin_command_comes_through_the_hook_from_its_plugin(monkeypatch):
    _legacy(monkeypatch, [])
    table = command_table(Registry())
    assert {name: table[name].plugin_name for name in BUILTIN} == BUILTIN
    assert all(table[name].package == "alignkit" and table[name].entry.help for name in BUILTIN)


def test_blocking_a_plugin_removes_its_commands(monkeypatch):
    _legacy(monkeypatch, [])
    monkeypatch.setenv("ALIGNKIT_DISABLE_PLUGINS", "human")
    table = command_table(Registry(get_plugin_manager()))
    assert "label" not in table and "evaluate" in table


def test_a_command_clashing_with_a_builtin_names_both_providers(monkeypatch):
    _legacy(monkeypatch, [])

    class Clash:
        @hookimpl
        def alignkit_commands(self):
            yield CommandEntry(name="runs", run=lambda argv: 0, help="my runs")

    pm = get_plugin_manager()
    pm.register(Clash(), name="clashing-plugin")
    with pytest.raises(PluginError) as info:
        command_table(Registry(pm))
    message = str(info.value)
    assert "command 'runs' is registered twice" in message
    assert "plugin 'core'" in message and "plugin 'clashing-plugin'" in message


def test_a_third_party_command_runs_and_is_blocked_with_its_plugin(fake, monkeypatch, capsys):
    _legacy(monkeypatch, [])
    table = command_table(Registry(get_plugin_manager(list(fake.entry_points))))
    hello = table["hello"]
    assert (hello.plugin_name, hello.package) == ("fake", "alignkit-fake")
    assert hello.entry.run(["bob"]) == 0 and capsys.readouterr().out == "hello, bob\n"
    monkeypatch.setenv("ALIGNKIT_DISABLE_PLUGINS", "fake")
    assert "hello" not in command_table(Registry(get_plugin_manager(list(fake.entry_points))))


def test_the_old_entry_point_group_still_runs_with_a_deprecation_warning(fake, monkeypatch, capsys):
    old = [ep for ep in fake.entry_points if ep.group == LEGACY_GROUP]
    assert [ep.name for ep in old] == ["hello-legacy"]
    _legacy(monkeypatch, old)
    with pytest.warns(DeprecationWarning, match="package 'alignkit-fake' declares the command 'hello-legacy'"):
        table = command_table(Registry())
    assert table["hello-legacy"].package == "alignkit-fake"
    assert table["hello-legacy"].entry.run([]) == 0 and "old group" in capsys.readouterr().out
    monkeypatch.setenv("ALIGNKIT_DISABLE_PLUGINS", "fake")  # the package's plugin name blocks it too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "hello-legacy" not in command_table(Registry(get_plugin_manager()))


def test_alignkits_own_old_group_entries_are_not_read_twice(monkeypatch):
    """An install made before 1.1 still lists label, report, ... in the old group's metadata."""
    stale = SimpleNamespace(name="label", value="alignkit.plugins.human.cli:main",
                            dist=SimpleNamespace(name="alignkit", entry_points=[]))
    _legacy(monkeypatch, [stale])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert command_table(Registry())["label"].plugin_name == "human"


def test_an_old_group_command_clashing_with_a_hook_command_names_both(monkeypatch):
    ep = EntryPoint(name="runs", value="other_pkg.cli:main", group=LEGACY_GROUP)
    _legacy(monkeypatch, [ep])
    with pytest.raises(PluginError, match=r"command 'runs' is registered twice: by plugin 'core'.*other_pkg"):
        with pytest.warns(DeprecationWarning):
            command_table(Registry())


@pytest.mark.parametrize(("arg", "expected"), [("runs", True), ("hello-legacy", True), ("pipeline=dpo", False),
                                               ("-m", False), ("--help", False), ("+x=1", False),
                                               ("~trainer", False), ("", False)])
def test_only_a_bare_word_names_a_command(arg, expected):
    assert is_command_word(arg) is expected


def test_an_unknown_word_is_an_error_listing_the_commands(monkeypatch, capsys):
    from alignkit.core import cli

    _legacy(monkeypatch, [])
    monkeypatch.setattr(cli, "_registry", None)
    with pytest.raises(SystemExit) as info:
        cli.main(["rnus"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown command 'rnus'" in err and "Did you mean 'runs'?" in err and "plugins" in err
