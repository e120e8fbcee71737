"""``preference_model=rule``: built from the config through the registry, errors name the rule and sample."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.core import ConfigError
from alignkit.core.pipeline import validate_config


def bad_raises(prompt, response):
    raise KeyError("boom")


def bad_nan(prompt, response):
    return math.nan if "x" in response else 1.0


def bad_text(prompt, response):
    return "high"


def build(registry, **options):
    entry = registry.get("preference_model", "rule")
    cfg = validate_config("preference_model", "rule", entry.config_schema, {"name": "rule", **options})
    return entry.factory(cfg, None)


def test_rule_scores_a_batch(registry):
    scorer = build(registry, fn="alignkit.plugins.rules.demo:arithmetic_correct")
    prompts = [[{"role": "user", "content": "What is 2 + 3?"}]] * 3
    scores = scorer.score(prompts, ["2 + 3 = 5.", "6", "five"])
    assert scores.dtype == torch.float32
    assert scores.tolist() == [1.0, 0.0, 0.0]
    shifted = build(registry, fn="alignkit.plugins.rules.demo:arithmetic_correct", scale=2.0, shift=-1.0)
    assert shifted.score(prompts, ["5", "6", "7"]).tolist() == [1.0, -1.0, -1.0]


def test_rule_composes_from_the_config_group(compose_config):
    cfg = compose_config("preference_model=rule", "preference_model.fn=alignkit.plugins.rules.demo:concise")
    assert cfg.preference_model.name == "rule"
    assert cfg.preference_model.fn == "alignkit.plugins.rules.demo:concise"


@pytest.mark.parametrize("fn, message", [
    (None, "needs preference_model.fn"),
    ("no_colon", "must look like"),
    ("alignkit.plugins.rules.nowhere:f", "cannot import"),
    ("alignkit.plugins.rules.demo:missing", "no attribute"),
])
def test_bad_rule_names(registry, fn, message):
    with pytest.raises(ConfigError, match=message):
        build(registry, fn=fn)


@pytest.mark.parametrize("name, message", [
    ("bad_raises", "raised KeyError"),
    ("bad_nan", "returned nan"),
    ("bad_text", "not a number"),
])
def test_failing_rules_name_the_rule_and_the_sample(registry, name, message):
    spec = f"{__name__}:{name}"
    scorer = build(registry, fn=spec)
    with pytest.raises(ConfigError) as info:
        scorer.score([[{"role": "user", "content": "Say x"}]], ["x marks the spot"])
    text = str(info.value)
    assert message in text and spec in text and "x marks the spot" in text and "Say x" in text
