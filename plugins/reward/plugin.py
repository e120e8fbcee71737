"""Built-in plugin: the ``reward`` optimizer and the ``bradley_terry`` preference model."""

from alignkit.core import OptimizerEntry, PreferenceModelEntry, hookimpl


@hookimpl
def alignkit_optimizers():
    from alignkit.plugins.reward.trainer import RewardConfig, RewardOptimizer

    yield OptimizerEntry(
        name="reward",
        factory=RewardOptimizer,
        config_schema=RewardConfig,
        description="Bradley-Terry reward model (margin, soft labels, centering, K-head ensemble).",
    )


@hookimpl
def alignkit_preference_models():
    from alignkit.plugins.reward.preference_model import BradleyTerryConfig, build

    yield PreferenceModelEntry(
        name="bradley_terry",
        factory=build,
        config_schema=BradleyTerryConfig,
        description="Scores responses with a trained reward model (ensemble mean - k * std).",
    )
