"""Builds the plugin manager: built-ins and third-party plugins through one entry-point group.

Environment switches:
  ALIGNKIT_DISABLE_PLUGINS=a,b   block plugins by name (entry-point name)
  ALIGNKIT_LOAD_PLUGINS=a,b      load only these entry points (built-ins still load)
  ALIGNKIT_TRACE_HOOKS=1         print every hook call
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import EntryPoint, entry_points
from typing import Iterable

import pluggy

from alignkit.core import hookspecs
from alignkit.core.errors import PluginError

ENTRY_POINT_GROUP = "alignkit"


def _names_from_env(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def builtin_entry_points() -> list[EntryPoint]:
    """The built-in plugins as entry points, read from ``alignkit.plugins.BUILTIN_PLUGINS``.

    They are also declared in pyproject's ``alignkit`` group; this list is the fallback when
    the package runs from a source tree without installed metadata.
    """
    from alignkit.plugins import BUILTIN_PLUGINS

    return [EntryPoint(name=name, value=module, group=ENTRY_POINT_GROUP) for name, module in BUILTIN_PLUGINS]


def get_plugin_manager(
    entry_points_: Iterable[EntryPoint] | None = None,
    *,
    load_installed: bool = True,
) -> pluggy.PluginManager:
    """A fresh manager with every plugin registered and ``check_pending()`` passed.

    :param entry_points_: extra entry points to load (tests pass fake distributions).
    :param load_installed: read the installed ``alignkit`` entry-point group.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    blocked = _names_from_env("ALIGNKIT_DISABLE_PLUGINS") or set()
    only = _names_from_env("ALIGNKIT_LOAD_PLUGINS")
    for name in blocked:
        pm.set_blocked(name)

    candidates: dict[str, tuple[EntryPoint, str]] = {}
    for ep in builtin_entry_points():
        candidates[ep.name] = (ep, "alignkit")
    if load_installed:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "unknown"
            if ep.name in candidates and candidates[ep.name][0].value == ep.value:
                candidates[ep.name] = (ep, dist)  # the installed built-in: same module
                continue
            if only is not None and ep.name not in only:
                continue
            _add_candidate(candidates, ep, dist)
    for ep in entry_points_ or ():
        dist = ep.dist.name if ep.dist is not None else ep.value.split(".")[0].split(":")[0]
        _add_candidate(candidates, ep, dist)

    for name, (ep, dist) in candidates.items():
        if pm.is_blocked(name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin names itself
            raise PluginError(
                f"plugin '{name}' from package '{dist}' failed to load ({ep.value}): "
                f"{type(exc).__name__}: {exc}. Block it with ALIGNKIT_DISABLE_PLUGINS={name}."
            ) from exc
        pm.register(plugin, name=name)
        _DISTRIBUTIONS[id(plugin)] = dist
    pm.check_pending()
    if os.environ.get("ALIGNKIT_TRACE_HOOKS"):
        pm.trace.root.setwriter(lambda msg: sys.stderr.write(msg))
        pm.enable_tracing()
    return pm


def _add_candidate(candidates: dict[str, tuple[EntryPoint, str]], ep: EntryPoint, dist: str) -> None:
    if ep.name in candidates and candidates[ep.name][0].value != ep.value:
        other_ep, other_dist = candidates[ep.name]
        raise PluginError(
            f"two plugins are named '{ep.name}': {other_ep.value} from package '{other_dist}' "
            f"and {ep.value} from package '{dist}'. Uninstall one or block it with "
            f"ALIGNKIT_DISABLE_PLUGINS."
        )
    candidates[ep.name] = (ep, dist)


_DISTRIBUTIONS: dict[int, str] = {}


def distribution_of(plugin: object) -> str:
    """The package that provided a registered plugin object (``alignkit`` for built-ins)."""
    return _DISTRIBUTIONS.get(id(plugin), "unknown")
