"""Built-in plugin: the ``human`` feedback provider (annotation web app + label store)."""

from alignkit.core import CommandEntry, FeedbackProviderEntry, hookimpl


@hookimpl
def alignkit_feedback_providers():
    from alignkit.plugins.human.provider import HumanFeedbackConfig, factory

    yield FeedbackProviderEntry(
        name="human",
        factory=factory,
        config_schema=HumanFeedbackConfig,
        description="People compare responses in alignkit's annotation app (SQLite/PostgreSQL store).",
    )


def label_command(argv: list[str]) -> int:
    from alignkit.plugins.human.cli import main

    return main(argv)


@hookimpl
def alignkit_commands():
    yield CommandEntry(name="label", run=label_command, usage="serve|export ...",
                       help="the annotation app and the label store: serve it, add annotators, move labels")
