"""Built-in plugin: the reference-free preference optimizers ``orpo`` and ``cpo``."""

from alignkit.core import OptimizerEntry, hookimpl


@hookimpl
def alignkit_optimizers():
    from alignkit.plugins.reference_free.cpo import CPOConfig, CPOOptimizer
    from alignkit.plugins.reference_free.orpo import ORPOConfig, ORPOOptimizer

    yield OptimizerEntry(
        name="orpo",
        factory=ORPOOptimizer,
        config_schema=ORPOConfig,
        description="ORPO: NLL on the chosen response plus an odds-ratio preference term; no reference model.",
    )
    yield OptimizerEntry(
        name="cpo",
        factory=CPOOptimizer,
        config_schema=CPOConfig,
        description="CPO: reference-free DPO (sigmoid, hinge, ipo, simpo) plus NLL on the chosen response.",
    )
