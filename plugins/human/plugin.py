"""Built-in plugin: the ``human`` feedback provider (annotation web app + label store)."""

from alignkit.core import FeedbackProviderEntry, hookimpl


@hookimpl
def alignkit_feedback_providers():
    from alignkit.plugins.human.provider import HumanFeedbackConfig, factory

    yield FeedbackProviderEntry(
        name="human",
        factory=factory,
        config_schema=HumanFeedbackConfig,
        description="People compare responses in alignkit's annotation app (SQLite/PostgreSQL store).",
    )
