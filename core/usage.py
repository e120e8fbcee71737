"""``alignkit --help``: alignkit's commands and every installed option of each config group.

Hydra's own help (``--hydra-help``) describes Hydra's flags; this one is what a user of alignkit
looks for: the subcommands, including those plugins add (entry-point group ``alignkit.commands``),
and the options of each config group found in ``alignkit.conf`` and every plugin's config root.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from alignkit.core.registry import Registry

BUILTIN_COMMANDS = (
    ("plugins", "list every registered component, with its package"),
    ("plugin new NAME", "write a skeleton package for a new plugin"),
    ("runs [DIR]", "run directories under DIR (runs/) with their status"),
    ("resume RUN_DIR", "rerun a run with its saved overrides, in its own directory"),
)

HEADER = """\
usage: alignkit [GROUP=OPTION ...] [KEY=VALUE ...] [--dry-run]
       alignkit -m KEY=A,B ...        a sweep: one run per value
       alignkit COMMAND ...

Compose a pipeline from the config groups below and run its stages into a run directory.
  --dry-run      compose, check every stage's options, components, functions and models,
                 print the plan and exit: nothing trains
  --cfg job      print the composed config and exit
  --hydra-help   Hydra's own flags (--multirun, --cfg, --resolve, --info, ...)
"""

EXAMPLES = """\
examples:
  alignkit pipeline=dpo model=tiny-random trainer.max_steps=5
  alignkit pipeline=ppo preference_model=judge --dry-run
  alignkit pipeline=sft --cfg job
"""


def print_usage(registry: Registry, out: TextIO = sys.stdout) -> int:
    """Print the help; returns the exit status (0)."""
    from alignkit.core.preflight import INTERNAL_GROUPS, config_groups

    print(HEADER, file=out)
    print("commands:", file=out)
    commands = [*BUILTIN_COMMANDS, *_plugin_commands()]
    width = max(len(name) for name, _ in commands) + 2
    for name, text in commands:
        print(f"  {name.ljust(width)}{text}", file=out)
    groups = config_groups(registry.config_searchpath())
    shown = {g: o for g, o in groups.items() if g not in INTERNAL_GROUPS}
    width = max(len(g) for g in [*shown, *filter(None, INTERNAL_GROUPS.values())]) + 2
    print("\nconfig groups (GROUP=OPTION; a plugin's options included):", file=out)
    for group, options in shown.items():
        print(f"  {group.ljust(width)}{', '.join(options)}", file=out)
    print("\noptions that name a file of conf/:", file=out)
    for group, key in INTERNAL_GROUPS.items():
        if key and group in groups:
            print(f"  {key.ljust(width)}{', '.join(groups[group])}", file=out)
    print("\n" + EXAMPLES, end="", file=out)
    return 0


def _plugin_commands() -> list[tuple[str, str]]:
    from importlib.metadata import entry_points

    from alignkit.core.cli import COMMANDS_GROUP

    out = {}
    for ep in entry_points(group=COMMANDS_GROUP):
        package = ep.dist.name if ep.dist is not None else ep.value.split(".")[0]
        out[ep.name] = f"from package {package}: alignkit {ep.name} --help"
    return sorted(out.items())
