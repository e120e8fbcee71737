"""Built-in plugin: the on-policy RL optimizers. One loop (loop.py) serves them all; each name is a
composition of registered parts with its defaults in conf/optimizer/<name>.yaml."""

from alignkit.core import OptimizerEntry, hookimpl


@hookimpl
def alignkit_optimizers():
    from alignkit.plugins.rl.loop import RLOptimizer
    from alignkit.plugins.rl.options import ALGORITHMS, schema

    for name, description in ALGORITHMS.items():
        yield OptimizerEntry(name=name, factory=RLOptimizer, config_schema=schema(name), description=description)
