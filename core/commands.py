"""``alignkit <command> ...``: the subcommands, found through the ``alignkit_commands`` hook.

This module is also the built-in plugin ``core`` (``alignkit.plugins.BUILTIN_PLUGINS``) that offers
the commands of the core itself: ``plugins``, ``plugin new``, ``runs`` and ``resume``. The other
built-in commands come from the plugins that own them (``label``: human, ``evaluate`` and
``report``: evaluation, ``data``: curation), and a third-party package adds one the same way, so
``ALIGNKIT_DISABLE_PLUGINS`` blocks a command with the rest of its plugin.

A command declared in the old ``alignkit.commands`` entry-point group still runs until
alignkit 1.2, with a ``DeprecationWarning`` telling its package to use the hook.
"""

from __future__ import annotations

import shlex
import sys
import warnings
from typing import TYPE_CHECKING, Any, Sequence

from alignkit.core.errors import PluginError
from alignkit.core.hookspecs import hookimpl
from alignkit.core.types import CommandEntry

if TYPE_CHECKING:
    from alignkit.core.registry import Registered, Registry

LEGACY_GROUP = "alignkit.commands"
"""The entry-point group that held commands before ``alignkit_commands`` (read until alignkit 1.2)."""

LEGACY_WARNING = "the 'alignkit.commands' entry-point group"
"""How the deprecation warning starts (the CLI shows it: Python hides DeprecationWarning by default)."""


def is_command_word(arg: str) -> bool:
    """Whether ``arg`` can name a command rather than a Hydra override or a flag."""
    return bool(arg) and "=" not in arg and arg[0] not in "-+~"


def command_table(registry: Registry) -> dict[str, Registered]:
    """Every command by name, with the plugin and package that offers it: those of the
    ``alignkit_commands`` hook, then the deprecated entry-point group's."""
    from alignkit.core.registry import Registered

    table = dict(registry.components(CommandEntry.kind))
    for ep in _legacy_entry_points():
        package = ep.dist.name if ep.dist is not None else ep.value.split(".")[0].split(":")[0]
        if package == "alignkit":
            continue  # alignkit's own commands come from the hook (an older install's metadata may list them)
        if _blocked(registry, ep):
            continue
        warnings.warn(
            f"{LEGACY_WARNING} is deprecated: package '{package}' declares the command '{ep.name}' there "
            f"({ep.value}). Offer it with the alignkit_commands hook instead (docs/plugins/hooks.md); "
            f"alignkit 1.2 will not read the group.", DeprecationWarning, stacklevel=2)
        if ep.name in table:
            there = table[ep.name]
            raise PluginError(
                f"command '{ep.name}' is registered twice: by plugin '{there.plugin_name}' (package "
                f"'{there.package}') and by the entry point {ep.value} of package '{package}' (group "
                f"{LEGACY_GROUP})")
        entry = CommandEntry(name=ep.name, run=_load_and_run(ep), help=f"alignkit {ep.name} --help")
        table[entry.name] = Registered(entry, ep.name, package)
    return table


def _legacy_entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=LEGACY_GROUP))


def _blocked(registry: Registry, ep: Any) -> bool:
    """A legacy command is blocked by its own name or by the name of a plugin of its package."""
    if registry.pm.is_blocked(ep.name):
        return True
    plugins = [p.name for p in ep.dist.entry_points if p.group == "alignkit"] if ep.dist is not None else []
    return any(registry.pm.is_blocked(name) for name in plugins)


def _load_and_run(ep: Any) -> Any:
    def run(argv: list[str]) -> Any:
        return ep.load()(argv)

    return run


def unknown_command(name: str, table: dict[str, Registered]) -> str:
    """The error for ``alignkit <name>`` when no plugin offers ``name``."""
    import difflib
    import os

    close = difflib.get_close_matches(name, sorted(table), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    blocked = os.environ.get("ALIGNKIT_DISABLE_PLUGINS", "").strip()
    if blocked:
        hint += f" (ALIGNKIT_DISABLE_PLUGINS={blocked} blocks those plugins' commands.)"
    return (f"unknown command '{name}'; the commands are: {', '.join(sorted(table))}.{hint} "
            f"A run takes GROUP=OPTION overrides (alignkit --help).")


# -- the core's own commands ------------------------------------------------------------


def _plugins(argv: Sequence[str]) -> int:
    import argparse

    from alignkit.core.cli import list_plugins, registry

    argparse.ArgumentParser(prog="alignkit plugins", description="List every registered component and command "
                            "with the plugin package that provides it, then the plugins that failed to load."
                            ).parse_args(list(argv))
    list_plugins(registry())
    return 0


def _plugin(argv: Sequence[str]) -> int:
    from alignkit.core.scaffold import main

    return main(argv)


def _runs(argv: Sequence[str]) -> int:
    from alignkit.core.runs import runs_command

    return runs_command(argv)


def _resume(argv: Sequence[str]) -> Any:
    from alignkit.core.cli import main
    from alignkit.core.runs import resume_overrides

    args = resume_overrides(list(argv))
    print("alignkit: resuming: " + shlex.join(["alignkit", *args]), file=sys.stderr)
    return main(args)


@hookimpl
def alignkit_commands():
    yield CommandEntry(name="plugins", run=_plugins, help="list every registered component, with its package")
    yield CommandEntry(name="plugin", run=_plugin, usage="new NAME", help="write a skeleton package for a new plugin")
    yield CommandEntry(name="runs", run=_runs, usage="[DIR]", help="run directories under DIR (runs/) with their status")
    yield CommandEntry(name="resume", run=_resume, usage="RUN_DIR",
                       help="rerun a run with its saved overrides, in its own directory")
