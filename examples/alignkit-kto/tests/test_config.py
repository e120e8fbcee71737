"""The plugin's config files compose into alignkit's config and say how to run them."""

from importlib.resources import files

import pytest

CONF = files("alignkit_kto.conf")
OPTIONS = [(group.name, option.name[:-5]) for group in CONF.iterdir() if group.is_dir()
           for option in group.iterdir() if option.name.endswith(".yaml")]


def test_the_plugin_ships_its_options():
    assert sorted(OPTIONS) == [("feedback", "keyword"), ("optimizer", "kto"), ("pipeline", "kto")]


@pytest.mark.parametrize(("group", "option"), OPTIONS)
def test_every_option_composes_and_says_how_to_run_it(group, option, compose_config):
    text = CONF.joinpath(group, f"{option}.yaml").read_text()
    assert "Run:" in text[:400], f"{group}/{option}.yaml: start with a comment saying how to run it"
    cfg = compose_config(f"{group}={option}")
    if group != "pipeline":
        assert cfg[group].name == option
    else:
        assert cfg.pipeline.name == option and cfg.optimizer.name == "kto"


def test_a_misspelled_option_is_an_error_naming_it(compose_config, registry):
    from alignkit.core import ConfigError
    from alignkit.core.pipeline import validate_config

    entry = registry.get("optimizer", "kto")
    node = compose_config("optimizer=kto", "+optimizer.betta=0.2").optimizer
    with pytest.raises(ConfigError, match="no option 'betta'"):
        validate_config("optimizer", "kto", entry.config_schema, {k: v for k, v in node.items() if k != "trainer"})
