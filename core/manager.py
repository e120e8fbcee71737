"""Builds the plugin manager: built-ins and third-party plugins through one entry-point group.

A plugin that cannot be used (its import raises, it implements a misspelled hook, its
``alignkit_requires`` excludes this core's ``ALIGNKIT_HOOKS_VERSION``) is skipped with a warning
naming the plugin, its package and the fix, so one broken package does not stop every run; the
failure is also kept (``plugin_failures``) and repeated by ``alignkit plugins`` and by the error
for an unknown component name. ``ALIGNKIT_STRICT_PLUGINS=1`` turns the warnings into one
``PluginError`` listing them all (CI for a plugin should set it).

Environment switches:
  ALIGNKIT_DISABLE_PLUGINS=a,b   block plugins by name (entry-point name)
  ALIGNKIT_LOAD_PLUGINS=a,b      load only these entry points (built-ins still load)
  ALIGNKIT_STRICT_PLUGINS=1      a plugin that fails to load is an error, not a warning
  ALIGNKIT_TRACE_HOOKS=1         print every hook call
"""

from __future__ import annotations

import difflib
import logging
import os
import sys
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Iterable

import pluggy

from alignkit.core import hookspecs
from alignkit.core.errors import PluginError

ENTRY_POINT_GROUP = "alignkit"
HOOK_NAMES = frozenset(name for name in vars(hookspecs) if name.startswith("alignkit_"))
PLUGIN_ATTRIBUTES = frozenset({"alignkit_requires"})  # module attributes that are not hooks

log = logging.getLogger("alignkit")


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that was skipped: its entry-point name, its package and why."""

    plugin: str
    package: str
    message: str


def _truthy(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() not in ("", "0", "false", "no", "off")


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
    strict: bool | None = None,
) -> pluggy.PluginManager:
    """A fresh manager with every usable plugin registered and ``check_pending()`` passed.

    :param entry_points_: extra entry points to load (tests pass fake distributions).
    :param load_installed: read the installed ``alignkit`` entry-point group.
    :param strict: raise one ``PluginError`` listing every plugin that failed to load instead
        of warning and skipping them (default: ``ALIGNKIT_STRICT_PLUGINS``).
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

    failures: list[PluginFailure] = []
    for name, (ep, dist) in candidates.items():
        if pm.is_blocked(name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin names itself and its package
            problem: str | None = f"importing {ep.value} raised {type(exc).__name__}: {exc}"
        else:
            problem = check_plugin(plugin)
            if problem is None:
                try:
                    pm.register(plugin, name=name)
                except Exception as exc:  # pluggy: a hook argument the spec does not have
                    problem = " ".join(str(exc).split())
        if problem is not None:
            failures.append(PluginFailure(name, dist, problem))
            continue
        _DISTRIBUTIONS[id(plugin)] = dist
    pm._alignkit_failures = failures  # type: ignore[attr-defined]
    if failures:
        if _truthy("ALIGNKIT_STRICT_PLUGINS") if strict is None else strict:
            raise PluginError("\n".join(describe_failure(f) for f in failures))
        for failure in failures:
            log.warning("alignkit: %s", describe_failure(failure))
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


def describe_failure(failure: PluginFailure) -> str:
    return (f"plugin '{failure.plugin}' from package '{failure.package}' failed to load: {failure.message}. "
            f"Fix or uninstall the package, or block it with ALIGNKIT_DISABLE_PLUGINS={failure.plugin}.")


def plugin_failures(pm: pluggy.PluginManager) -> list[PluginFailure]:
    """The plugins ``get_plugin_manager`` (or a registry hook call) skipped, in order."""
    return getattr(pm, "_alignkit_failures", [])


def record_failure(pm: pluggy.PluginManager, plugin_name: str, package: str, message: str) -> None:
    """Skip-and-warn for a registered plugin whose hook raised (see ``Registry``)."""
    failure = PluginFailure(plugin_name, package, message)
    if not hasattr(pm, "_alignkit_failures"):
        pm._alignkit_failures = []  # type: ignore[attr-defined]
    pm._alignkit_failures.append(failure)  # type: ignore[attr-defined]
    if _truthy("ALIGNKIT_STRICT_PLUGINS"):
        raise PluginError(describe_failure(failure))
    log.warning("alignkit: %s", describe_failure(failure))


def check_plugin(plugin: Any) -> str | None:
    """Why ``plugin`` cannot be registered (None when it can): a misspelled hook, a hook
    function missing ``@hookimpl``, or an ``alignkit_requires`` outside this core's version."""
    problem = _check_version(plugin)
    if problem is not None:
        return problem
    for attr in sorted(dir(plugin)):
        if attr.startswith("__"):
            continue
        try:
            value = getattr(plugin, attr)
        except Exception:  # a property that raises is not a hook
            continue
        opts = getattr(value, f"{hookspecs.PROJECT}_impl", None)
        marked = isinstance(opts, dict)
        hook = (opts.get("specname") or attr) if marked else attr  # pluggy's @hookimpl(specname=...)
        named = attr.startswith("alignkit_") and attr not in PLUGIN_ATTRIBUTES and callable(value)
        if (marked or named) and hook not in HOOK_NAMES:
            close = difflib.get_close_matches(hook, sorted(HOOK_NAMES), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f"; the hooks are: {', '.join(sorted(HOOK_NAMES))}"
            return f"it implements '{hook}', which is not an alignkit hook{hint}"
        if attr in HOOK_NAMES and callable(value) and not marked:
            return (f"'{attr}' is not marked with @alignkit.core.hookimpl, so alignkit would never call it; "
                    f"decorate it")
    return None


def _check_version(plugin: Any) -> str | None:
    wanted = getattr(plugin, "alignkit_requires", None)
    if wanted is None:
        return None
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import Version

    try:
        spec = SpecifierSet(str(wanted))
    except InvalidSpecifier:
        return f"alignkit_requires = {wanted!r} is not a version range like '>=1.0,<2'"
    current = Version(hookspecs.ALIGNKIT_HOOKS_VERSION)
    if spec.contains(current, prereleases=True):
        return None
    probes = [Version(v) for v in ("0.1", "0.5", "0.9", "1.0", "1.5", "2.0", "3.0", "5.0", "10.0")]
    older = any(spec.contains(v, prereleases=True) for v in probes if v < current)
    newer = any(spec.contains(v, prereleases=True) for v in probes if v > current)
    if older and not newer:
        fix = "it was written for an older alignkit: upgrade the plugin, or install an older alignkit"
    elif newer and not older:
        fix = "it needs a newer alignkit: upgrade alignkit"
    else:
        fix = "install a plugin release made for this alignkit"
    return (f"it requires alignkit hooks {spec}, and this alignkit provides hooks version "
            f"{hookspecs.ALIGNKIT_HOOKS_VERSION} ({fix})")
