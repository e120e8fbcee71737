"""Built-in plugin: the ``sft`` optimizer."""

from alignkit.core import OptimizerEntry, hookimpl


@hookimpl
def alignkit_optimizers():
    from alignkit.plugins.sft.sft import SFTConfig, SFTOptimizer

    yield OptimizerEntry(
        name="sft",
        factory=SFTOptimizer,
        config_schema=SFTConfig,
        description="Supervised fine-tuning on chat data, loss on assistant tokens only (packed rows).",
    )
