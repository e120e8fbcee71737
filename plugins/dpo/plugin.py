"""Built-in plugin: the ``dpo`` optimizer family (sigmoid, ipo, robust, cdpo, rdpo, simpo, hinge)."""

from alignkit.core import OptimizerEntry, hookimpl


@hookimpl
def alignkit_optimizers():
    from alignkit.plugins.dpo.dpo import DPOConfig, DPOOptimizer

    yield OptimizerEntry(
        name="dpo",
        factory=DPOOptimizer,
        config_schema=DPOConfig,
        description="Direct Preference Optimization and variants, with cached reference log-probs.",
    )
