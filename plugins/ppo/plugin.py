"""Built-in plugin: the ``ppo`` optimizer (RLHF's policy step against any preference model)."""

from alignkit.core import OptimizerEntry, hookimpl


@hookimpl
def alignkit_optimizers():
    from alignkit.plugins.ppo.ppo import PPOConfig, PPOOptimizer

    yield OptimizerEntry(
        name="ppo",
        factory=PPOOptimizer,
        config_schema=PPOConfig,
        description="PPO with a critic, GAE and a KL penalty to the frozen reference; rewards from any preference model.",
    )
