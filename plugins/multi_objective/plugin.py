"""Built-in plugin: preference model ``composite`` (several preference models, one combined reward)."""

from alignkit.core import PreferenceModelEntry, hookimpl


@hookimpl
def alignkit_preference_models():
    from alignkit.plugins.multi_objective.composite import CompositeConfig, CompositeScorer

    yield PreferenceModelEntry(
        name="composite",
        factory=CompositeScorer.from_config,
        config_schema=CompositeConfig,
        description="Several preference models combined: weighted sum, Llama 2's safety rule, Safe-RLHF's Lagrangian.",
    )
