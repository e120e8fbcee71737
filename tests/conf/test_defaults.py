"""Defaults are declared once, in the dataclasses: a value an option file of conf/ writes either
equals its dataclass default or is listed below as differing on purpose, with the reason; and the
composed config still shows every option (``alignkit ... --cfg job``)."""

from __future__ import annotations

import dataclasses
from importlib.resources import files

import pytest
import yaml

from alignkit.core.config_defaults import GROUP_OF_KIND, schema_defaults
from alignkit.core.engine import TrainerConfig
from alignkit.core.testing import compose

CONF = files("alignkit.conf")
GROUPS: dict[str, tuple[str, ...]] = {"critic": ("feedback_provider",)}
for _kind, _group in GROUP_OF_KIND.items():
    GROUPS[_group] = (*GROUPS.get(_group, ()), _kind)
"""Config group -> the registry kinds its option files build (``critic`` options are feedback providers;
``optimizer`` files build training algorithms and stages)."""

TRAINER = schema_defaults(TrainerConfig)
_RL_TRAINER = {"trainer.learning_rate": "on-policy RL takes small steps (1e-6; online DPO 5e-7, TRL's default)",
               "trainer.warmup_ratio": "RL: the first rollouts already train at full rate",
               "trainer.lr_scheduler": "RL: constant, as TRL's PPO, GRPO, RLOO and online DPO trainers"}
DIFFERS_ON_PURPOSE: dict[tuple[str, str], dict[str, str]] = {
    **{("optimizer", rl): _RL_TRAINER
       for rl in ("ppo", "grpo", "rloo", "online_dpo", "dr_grpo", "dapo", "gspo", "reinforce_pp")},
    ("optimizer", "dpo"): {"trainer.learning_rate": "DPO fine-tunes an SFT model: 1e-5, below the SFT default 5e-5"},
    ("preference_model", "composite"): {
        "members": "the demo's two rules, so preference_model=composite runs as is (the schema's default is none)",
        "weights": "the demo's weighting of those members: brevity counts a fifth of correctness"},
    ("data", "mixture"): {"sources": "the demo mixture, so data=mixture runs as is (the schema's default is none)"},
}
"""(group, option) -> {key: why its file sets a value other than the dataclass default}."""


def _same(value, default) -> bool:
    if isinstance(value, bool) or isinstance(default, bool):
        return value is default
    if isinstance(value, (int, float)) and isinstance(default, (int, float)):
        return float(value) == float(default)
    return value == default


def disagreements(group: str, option: str, text: str, schema: type) -> list[str]:
    """``key=value (default d)`` for every value of the file that neither equals its dataclass default
    nor is listed in ``DIFFERS_ON_PURPOSE``."""
    data = yaml.safe_load(text) or {}
    defaults = schema_defaults(schema)
    on_purpose = DIFFERS_ON_PURPOSE.get((group, option), {})
    out = []
    for key, value in data.items():
        if key in ("name", "defaults"):
            continue
        if key == "trainer" and group == "optimizer":  # an optimizer's own trainer settings
            out += [f"trainer.{k}={v!r} (TrainerConfig: {TRAINER.get(k)!r})" for k, v in (value or {}).items()
                    if f"trainer.{k}" not in on_purpose and not _same(v, TRAINER.get(k))]
        elif key not in on_purpose and (key not in defaults or not _same(value, defaults[key])):
            out.append(f"{key}={value!r} ({schema.__name__}: {defaults.get(key, 'no such field')!r})")
    return out


def option_files():
    for group in GROUPS:
        folder = CONF.joinpath(group)
        if folder.is_dir():
            for path in sorted(folder.iterdir(), key=lambda p: p.name):
                if path.name.endswith(".yaml"):
                    yield group, path.name[:-5]


@pytest.fixture(scope="module")
def schemas():
    from alignkit.core.registry import Registry

    registry = Registry()
    out = {}
    for group, option in option_files():
        found = next((registry.components(kind)[option] for kind in GROUPS[group]
                      if option in registry.components(kind)), None)
        schema = found.entry.config_schema if found is not None else None
        if schema is not None and dataclasses.is_dataclass(schema):
            out[group, option] = schema
    return out


def test_every_value_of_an_option_file_is_its_dataclass_default_or_differs_on_purpose(schemas):
    assert len(schemas) >= 20, f"the option files with a schema were not found: {sorted(schemas)}"
    wrong = {f"conf/{g}/{o}.yaml": bad for (g, o), schema in schemas.items()
             if (bad := disagreements(g, o, CONF.joinpath(g, f"{o}.yaml").read_text(), schema))}
    assert not wrong, ("a value in conf/ disagrees with its dataclass: fix one of them, or list the key in "
                       f"DIFFERS_ON_PURPOSE with the reason: {wrong}")


def test_the_check_catches_a_restated_default_that_drifted():
    from alignkit.plugins.dpo.dpo import DPOConfig

    drifted = "name: dpo\nbeta: 0.2\nloss_type: sigmoid\ntrainer: {learning_rate: 1.0e-5, max_steps: 30, seed: 7}\n"
    # beta 0.2 vs DPOConfig's 0.1; trainer.seed 7 vs TrainerConfig's 42; max_steps 30 is the default,
    # learning_rate is listed as differing on purpose
    assert disagreements("optimizer", "dpo", drifted, DPOConfig) == [
        "beta=0.2 (DPOConfig: 0.1)", "trainer.seed=7 (TrainerConfig: 42)"]


def test_the_trainer_defaults_live_in_the_dataclass_only():
    text = CONF.joinpath("config.yaml").read_text()
    assert not (yaml.safe_load(text).get("trainer") or {}), "conf/config.yaml restates TrainerConfig: set only what differs"
    cfg = compose([])
    assert dict(cfg.trainer) == TRAINER  # what --cfg job prints: every field, the dataclass's values
    # what users got before the defaults moved into the dataclass (conf/config.yaml won at run time)
    assert (TrainerConfig().learning_rate, TrainerConfig().checkpoint_every) == (5e-5, 10)


@pytest.mark.slow  # composes every option of every group
def test_the_composed_config_still_shows_every_option_with_its_default(schemas):
    for (group, option), schema in schemas.items():
        if group == "critic" or "/dataclass_defaults/" not in CONF.joinpath(group, f"{option}.yaml").read_text():
            continue  # critic: composed by the pipelines that take one; a file that restates its options shows those
        node = compose([f"{group}={option}"])[group]
        missing = sorted({f.name for f in dataclasses.fields(schema)} - set(node))
        assert not missing, f"{group}={option} --cfg job would not show {missing}"
