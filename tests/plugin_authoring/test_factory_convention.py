"""Every factory is called the same way, ``factory(options, ctx)``, with an instance of the entry's
``config_schema`` that the core validated; a factory written for alignkit 1.0 still works, with a
``DeprecationWarning`` naming its plugin."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from omegaconf import DictConfig

from alignkit.core import ConfigError, LoggerEntry, OptimizerEntry, hookimpl
from alignkit.core.options import build_component, factory_style
from alignkit.core.testing import registry_with

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Calibration:
    pairs: int = 32


@dataclass
class Options:
    beta: float = 0.1
    loss_type: str = "sigmoid"
    calibration: Calibration = field(default_factory=Calibration)


calls: list[tuple] = []


def new_style(options, ctx):
    calls.append(("new", options, ctx))
    return "built"


def old_style(config):
    calls.append(("old", config))
    return "built"


def old_logger(config, run_dir):
    calls.append(("old_logger", config, run_dir))
    return "built"


class Plugin:
    @hookimpl
    def alignkit_optimizers(self):
        yield OptimizerEntry(name="new_opt", factory=new_style, config_schema=Options, description="test")
        yield OptimizerEntry(name="old_opt", factory=old_style, config_schema=Options, description="test")
        yield OptimizerEntry(name="free_opt", factory=new_style, description="no schema: any keys")

    @hookimpl
    def alignkit_loggers(self):
        yield LoggerEntry(name="old_log", factory=old_logger, description="test")


@pytest.fixture
def registry():
    calls.clear()
    plugin = Plugin()
    plugin.__name__ = "a_1_0_plugin"  # the name the plugin manager registers it under
    return registry_with([plugin])


def test_the_factory_gets_an_instance_of_its_schema_and_the_context(registry):
    ctx = object()
    assert build_component(registry, "optimizer", "new_opt", {"name": "new_opt", "beta": "0.5",
                                                               "calibration": {"pairs": 8}}, ctx) == "built"
    [(_, options, got)] = calls
    assert options == Options(beta=0.5, calibration=Calibration(pairs=8)) and got is ctx  # "0.5" converted


def test_without_a_schema_the_factory_gets_the_node(registry):
    build_component(registry, "optimizer", "free_opt", {"name": "free_opt", "anything": 1}, None)
    [(_, options, _)] = calls
    assert isinstance(options, DictConfig) and options.anything == 1


def test_a_misspelled_option_names_the_group_and_the_key_with_a_did_you_mean(registry):
    with pytest.raises(ConfigError, match=r"optimizer 'new_opt' has no option 'betta' \(did you mean 'beta'\?\)"):
        build_component(registry, "optimizer", "new_opt", {"betta": 0.2}, None)
    with pytest.raises(ConfigError, match=r"option 'calibration' has no option 'calibration.pair' "
                                          r"\(did you mean 'pairs'\?\)"):
        build_component(registry, "optimizer", "new_opt", {"calibration": {"pair": 8}}, None)
    with pytest.raises(ConfigError, match=r"label 'new_opt' option 'beta': Value 'high'"):
        build_component(registry, "optimizer", "new_opt", {"beta": "high"}, None, group="label")
    assert not calls


def test_a_1_0_factory_still_works_with_a_warning_naming_its_plugin(registry, tmp_path):
    with pytest.warns(DeprecationWarning, match=r"optimizer 'old_opt' of plugin 'a_1_0_plugin'.*factory\(config\)"):
        build_component(registry, "optimizer", "old_opt", {"beta": 0.3}, object())
    [(_, config)] = calls
    assert isinstance(config, DictConfig) and (config.name, config.beta) == ("old_opt", 0.3)  # as 1.0 gave it

    class Run:
        class run_dir:
            path = tmp_path

    with pytest.warns(DeprecationWarning, match=r"factory\(config, run_dir\)"):
        build_component(registry, "logger", "old_log", {}, Run())
    assert calls[-1][2] == tmp_path  # a 1.0 logger still gets the run directory


def test_the_signature_is_read_once_per_factory(monkeypatch):
    def fresh(options, ctx):
        return None

    assert factory_style(fresh, "optimizer") == "options_ctx"
    monkeypatch.setattr(inspect, "signature", lambda *a, **k: pytest.fail("read twice"))
    assert factory_style(fresh, "optimizer") == "options_ctx"


def test_every_built_in_factory_takes_options_and_ctx():
    from alignkit.core.manager import get_plugin_manager
    from alignkit.core.registry import Registry

    registry = Registry(get_plugin_manager())
    old = [f"{kind} '{reg.entry.name}'" for kind, reg in registry.all()
           if reg.package == "alignkit" and hasattr(reg.entry, "factory")
           and factory_style(reg.entry.factory, kind) != "options_ctx"]
    assert not old, f"built-in factories with the 1.0 signature: {old}"


def test_no_plugin_turns_its_config_node_into_options_by_hand():
    hand_written = []
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"""\.pop\(["']name["']""", line):
                hand_written.append(f"{path.relative_to(ROOT)}:{number}")
    assert not hand_written, f"the core validates options (core/options.py); found by hand: {hand_written}"
