"""``alignkit --help``: alignkit's commands and every installed option of each config group.

Hydra's own help (``--hydra-help``) describes Hydra's flags; this one is what a user of alignkit
looks for: the subcommands (every plugin's ``alignkit_commands``, the built-in ones included)
and the options of each config group found in ``alignkit.conf`` and every plugin's config root.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from alignkit.core.registry import Registry

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
    commands = command_lines(registry)
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


def command_lines(registry: Registry) -> list[tuple[str, str]]:
    """``(name and usage, help)`` of every command, alignkit's own first, then each package's."""
    from alignkit.core.commands import command_table

    rows = []
    for name, found in command_table(registry).items():
        entry = found.entry
        text = entry.help or f"alignkit {name} --help"
        if found.package != "alignkit":
            text += f" (package {found.package})"
        rows.append((found.package != "alignkit", " ".join(filter(None, [name, entry.usage])), text))
    return [(shown, text) for _, shown, text in sorted(rows)]
