"""The plugin module named by the ``alignkit`` entry point: three hooks, heavy imports inside them."""

from alignkit.core import FeedbackProviderEntry, OptimizerEntry, hookimpl

alignkit_requires = ">=1.0,<2"  # the hook-spec versions this plugin was written for


@hookimpl
def alignkit_optimizers():
    from alignkit_kto.kto import KTOConfig, KTOOptimizer

    yield OptimizerEntry(
        name="kto",
        factory=KTOOptimizer,
        config_schema=KTOConfig,
        description="Kahneman-Tversky Optimization: unpaired desirable/undesirable feedback (Ethayarajh et al. 2024).",
    )


@hookimpl
def alignkit_feedback_providers():
    from alignkit_kto.keyword import KeywordConfig, KeywordJudge

    yield FeedbackProviderEntry(
        name="keyword",
        factory=KeywordJudge,
        config_schema=KeywordConfig,
        description="Rule judge: counts desirable and undesirable regular expressions in each response.",
    )


@hookimpl
def alignkit_config_searchpath():
    yield "pkg://alignkit_kto.conf"
