"""alignkit's built-in plugins.

They are ordinary plugins: each is also declared in the ``alignkit`` entry-point group of
pyproject.toml, exactly like a third-party package, and can be blocked by name with
``ALIGNKIT_DISABLE_PLUGINS``.
"""

BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("core", "alignkit.core.commands"),  # the core's own commands: plugins, plugin new, runs, resume
    ("models", "alignkit.plugins.models.plugin"),
    ("data", "alignkit.plugins.data.plugin"),
    ("sft", "alignkit.plugins.sft.plugin"),
    ("dpo", "alignkit.plugins.dpo.plugin"),
    ("reference_free", "alignkit.plugins.reference_free.plugin"),
    ("loggers", "alignkit.plugins.loggers.plugin"),
    ("rules", "alignkit.plugins.rules.plugin"),
    ("rl", "alignkit.plugins.rl.plugin"),  # ppo, grpo, rloo, online_dpo, dr_grpo, dapo, gspo, reinforce_pp
    ("rl_parts", "alignkit.plugins.rl.parts_plugin"),
    ("reward", "alignkit.plugins.reward.plugin"),
    ("feedback", "alignkit.plugins.feedback.plugin"),
    ("human", "alignkit.plugins.human.plugin"),
    ("evaluation", "alignkit.plugins.evaluation.plugin"),
    ("rejection_sampling", "alignkit.plugins.rejection_sampling.plugin"),
    ("curation", "alignkit.plugins.curation.plugin"),
    ("multi_objective", "alignkit.plugins.multi_objective.plugin"),
    ("generation", "alignkit.plugins.generation.plugin"),
)
