"""Built-in plugin: preference model ``rule`` (a Python callable as the reward)."""

from alignkit.core import PreferenceModelEntry, hookimpl


@hookimpl
def alignkit_preference_models():
    from alignkit.plugins.rules.scorer import RuleConfig, RuleScorer

    yield PreferenceModelEntry(
        name="rule",
        factory=RuleScorer.from_config,
        config_schema=RuleConfig,
        description="A Python function fn(prompt, response) -> float as the reward (verifiable tasks).",
    )
