"""Errors a plugin author meets, each naming the plugin, its package and the fix; a broken plugin
is skipped with a warning (ALIGNKIT_STRICT_PLUGINS=1: an error) and never takes the others down."""

import logging
import os
import subprocess
import sys
import textwrap
from importlib.metadata import Distribution
from pathlib import Path

import pytest

from alignkit.core import ConfigError, PluginError
from alignkit.core.hookspecs import ALIGNKIT_HOOKS_VERSION
from alignkit.core.manager import get_plugin_manager, plugin_failures
from alignkit.core.registry import Registry

HEADER = "from alignkit.core import OptimizerEntry, hookimpl\n"


@pytest.fixture
def make_plugin(tmp_path, monkeypatch):
    """``make_plugin(module_source)``: an installed-looking package 'alignkit-<name>' (a dist-info on
    sys.path, nothing pip-installed); returns its entry points."""
    made = []

    def _make(source: str, name: str = "broken") -> list:
        module = f"alignkit_test_{name}"
        (tmp_path / f"{module}.py").write_text(HEADER + textwrap.dedent(source))
        info = tmp_path / f"alignkit_{name}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: alignkit-{name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[alignkit]\n{name} = {module}\n")
        made.append(module)
        return list(Distribution.at(info).entry_points)

    monkeypatch.syspath_prepend(str(tmp_path))
    yield _make
    for module in made:
        sys.modules.pop(module, None)


def _load(eps, caplog):
    with caplog.at_level(logging.WARNING, logger="alignkit"):
        pm = get_plugin_manager(eps, strict=False)
    return pm, caplog.text


def _builtins_still_work(pm):
    assert {"sft", "dpo"} <= set(Registry(pm).components("optimizer"))


def test_a_misspelled_hook_names_itself_and_the_closest_hook(make_plugin, caplog):
    eps = make_plugin("""
        @hookimpl
        def alignkit_optimizer():
            yield OptimizerEntry(name="typo_opt", factory=object)
    """)
    pm, log = _load(eps, caplog)
    assert "plugin 'broken' from package 'alignkit-broken' failed to load" in log
    assert "'alignkit_optimizer', which is not an alignkit hook; did you mean 'alignkit_optimizers'?" in log
    assert "ALIGNKIT_DISABLE_PLUGINS=broken" in log
    assert pm.get_plugin("broken") is None
    _builtins_still_work(pm)
    with pytest.raises(PluginError, match=r"alignkit-broken.*did you mean 'alignkit_optimizers'"):
        get_plugin_manager(eps, strict=True)


def test_a_marked_hook_with_a_typo_in_the_prefix_is_caught_too(make_plugin, caplog):
    _, log = _load(make_plugin("""
        @hookimpl
        def aligkit_loggers():
            return []
    """), caplog)
    assert "'aligkit_loggers', which is not an alignkit hook; did you mean 'alignkit_loggers'?" in log


def test_a_hook_without_hookimpl_would_never_be_called(make_plugin, caplog):
    _, log = _load(make_plugin("""
        def alignkit_optimizers():
            yield OptimizerEntry(name="silent_opt", factory=object)
    """), caplog)
    assert "'alignkit_optimizers' is not marked with @alignkit.core.hookimpl" in log


def test_a_hook_argument_the_spec_lacks_names_the_package(make_plugin, caplog):
    pm, log = _load(make_plugin("""
        @hookimpl
        def alignkit_after_step(run, stage, stp, metrics):
            pass
    """), caplog)
    assert "package 'alignkit-broken' failed to load" in log and "stp" in log
    _builtins_still_work(pm)


def test_a_plugin_raising_on_import_is_skipped_and_named(make_plugin, caplog):
    pm, log = _load(make_plugin("raise RuntimeError('no GPU driver found')\n"), caplog)
    assert "package 'alignkit-broken' failed to load: importing alignkit_test_broken raised RuntimeError: " \
           "no GPU driver found" in log
    _builtins_still_work(pm)
    [failure] = plugin_failures(pm)
    assert (failure.plugin, failure.package) == ("broken", "alignkit-broken")
    with pytest.raises(ConfigError) as info:  # the optimizer the user wanted may be in the broken plugin
        Registry(pm).get("optimizer", "fancy")
    assert "'broken' from package 'alignkit-broken'" in str(info.value) and "no GPU driver" in str(info.value)


def test_a_registry_hook_raising_skips_that_plugin_only(make_plugin, caplog):
    pm, _ = _load(make_plugin("""
        @hookimpl
        def alignkit_optimizers():
            raise KeyError("missing setting")
    """), caplog)
    with caplog.at_level(logging.WARNING, logger="alignkit"):
        optimizers = Registry(pm).components("optimizer")
    assert {"sft", "dpo"} <= set(optimizers)
    assert "package 'alignkit-broken' failed to load: alignkit_optimizers raised KeyError: 'missing setting'" \
           in caplog.text


def test_disable_plugins_switches_a_broken_plugin_off_before_it_is_imported(make_plugin, caplog, monkeypatch):
    eps = make_plugin("raise RuntimeError('imported')\n")
    monkeypatch.setenv("ALIGNKIT_DISABLE_PLUGINS", "broken")
    pm, log = _load(eps, caplog)
    assert "alignkit-broken" not in log and "alignkit_test_broken" not in sys.modules
    assert all(f.plugin != "broken" for f in plugin_failures(pm))


@pytest.mark.parametrize(("requires", "message"), [
    ("<1", "requires alignkit hooks <1, and this alignkit provides hooks version "
           f"{ALIGNKIT_HOOKS_VERSION} (it was written for an older alignkit: upgrade the plugin"),
    (">=2.0", f"requires alignkit hooks >=2.0, and this alignkit provides hooks version {ALIGNKIT_HOOKS_VERSION} "
              "(it needs a newer alignkit: upgrade alignkit)"),
    ("banana", "alignkit_requires = 'banana' is not a version range like '>=1.0,<2'"),
])
def test_a_plugin_for_another_hooks_version_gets_a_clear_message(make_plugin, caplog, requires, message):
    pm, log = _load(make_plugin(f"""
        alignkit_requires = {requires!r}

        @hookimpl
        def alignkit_optimizers():
            yield OptimizerEntry(name="old_opt", factory=object)
    """), caplog)
    assert "package 'alignkit-broken' failed to load" in log and message in log
    assert "old_opt" not in Registry(pm).components("optimizer")


def test_a_plugin_within_its_range_loads(make_plugin, caplog):
    major = int(ALIGNKIT_HOOKS_VERSION.split(".")[0])
    pm, log = _load(make_plugin(f"""
        alignkit_requires = ">={ALIGNKIT_HOOKS_VERSION},<{major + 1}"

        @hookimpl
        def alignkit_optimizers():
            yield OptimizerEntry(name="fine_opt", factory=object, description="ok")
    """, name="fine"), caplog)
    assert "alignkit-fine" not in log
    assert Registry(pm).components("optimizer")["fine_opt"].package == "alignkit-fine"


def test_alignkit_plugins_lists_the_others_and_says_which_plugin_failed(make_plugin, caplog):
    import io

    from alignkit.core.cli import list_plugins

    pm, _ = _load(make_plugin("raise ImportError('needs alignkit-extras')\n"), caplog)
    out = io.StringIO()
    list_plugins(Registry(pm), out)
    assert any(line.split()[:3] == ["optimizer", "dpo", "alignkit"] for line in out.getvalue().splitlines())
    assert "not loaded: plugin 'broken' from package 'alignkit-broken' failed to load: importing " \
           "alignkit_test_broken raised ImportError: needs alignkit-extras" in out.getvalue()


def test_strict_plugins_make_the_cli_fail_with_one_paragraph(make_plugin, tmp_path):
    make_plugin("raise ImportError('needs alignkit-extras')\n")
    exe = Path(sys.executable).parent / "alignkit"
    env = dict(os.environ, PYTHONPATH=str(tmp_path), HF_HUB_OFFLINE="1", ALIGNKIT_STRICT_PLUGINS="1")
    strict = subprocess.run([str(exe), "plugins"], env=env, capture_output=True, text=True)
    assert strict.returncode == 2, strict.stderr
    assert "alignkit: error: plugin 'broken' from package 'alignkit-broken' failed to load: importing " \
           "alignkit_test_broken raised ImportError: needs alignkit-extras" in strict.stderr
    assert "Traceback" not in strict.stderr


def test_pluggy_specname_implementations_are_accepted(make_plugin, caplog):
    pm, log = _load(make_plugin("""
        @hookimpl(specname="alignkit_optimizers")
        def offer_my_optimizers():
            yield OptimizerEntry(name="renamed_opt", factory=object, description="ok")
    """, name="renamed"), caplog)
    assert "alignkit-renamed" not in log
    assert "renamed_opt" in Registry(pm).components("optimizer")
