"""Built-in plugin: the ``best_of_n`` stage (rejection sampling: sample N, keep the best-scored,
hand them to the next ``sft`` stage; ``pipeline=rejection_sampling`` repeats it in rounds)."""

from alignkit.core import StageEntry, hookimpl


@hookimpl
def alignkit_stages():
    from alignkit.plugins.rejection_sampling.best_of_n import BestOfNConfig, BestOfNOptimizer

    yield StageEntry(
        name="best_of_n",
        factory=BestOfNOptimizer,
        config_schema=BestOfNConfig,
        description="Sample N responses per prompt, keep the one the preference model scores best (artifact `sft`).",
    )
