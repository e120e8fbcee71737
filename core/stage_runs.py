"""What a pipeline stage runs: a training algorithm or a stage that trains nothing.

A stage entry of ``pipeline.stages`` names one of two registries::

    - {name: dpo, optimizer: dpo}                          # alignkit_optimizers: it trains the policy
    - {name: evaluate, stage: evaluate, config: ${evaluate}}  # alignkit_stages: it samples, labels or evaluates

Pipelines written before hooks 1.2 said ``optimizer: evaluate``; that still runs (the name is found
in the stage registry, with a ``DeprecationWarning`` and a log line saying to write ``stage:``), and a
plugin of 1.1 that offers a non-training stage through ``alignkit_optimizers`` keeps ``optimizer:``.
"""

from __future__ import annotations

import difflib
import logging
import warnings
from dataclasses import dataclass
from typing import Any

from alignkit.core.errors import ConfigError
from alignkit.core.registry import HOLDS, Registry

log = logging.getLogger("alignkit")

KINDS = ("optimizer", "stage")
"""The keys a pipeline stage names its component with; each is also the registry kind it is looked up in."""


@dataclass(frozen=True)
class StageComponent:
    """The registry entry a pipeline stage runs: ``kind`` is the registry it was found in, ``key``
    the key the stage wrote (they differ for ``optimizer: evaluate`` in a pipeline of hooks 1.1)."""

    kind: str
    key: str
    entry: Any

    @property
    def name(self) -> str:
        return self.entry.name


def stage_key(stage: Any) -> tuple[str, str]:
    """``(key, name)``: which of ``optimizer:`` / ``stage:`` the stage entry sets, and to what.
    A stage sets exactly one."""
    present = [key for key in KINDS if stage.get(key) is not None]
    label = stage.get("name")
    if len(present) == 2:
        raise ConfigError(f"pipeline stage '{label}' sets both optimizer: {stage.get('optimizer')} and stage: "
                          f"{stage.get('stage')}; a stage runs one: `optimizer: NAME` for a training algorithm, "
                          f"`stage: NAME` for a stage that samples, labels or evaluates")
    if not present:
        raise ConfigError(f"pipeline stage '{label}' names nothing to run: add `optimizer: NAME` (a training "
                          f"algorithm, e.g. dpo) or `stage: NAME` (e.g. evaluate); `alignkit plugins` lists both")
    return present[0], str(stage.get(present[0]))


def stage_runs(stage: Any) -> str:
    """The name of the algorithm or stage a pipeline stage entry runs (``dpo``, ``evaluate``)."""
    return stage_key(stage)[1]


def stage_component(registry: Registry, stage: Any, *, warn: bool = False) -> StageComponent:
    """The entry a pipeline stage runs, from the registry its key names. ``optimizer: NAME`` of a
    name only the stage registry holds is the alias of pipelines of hooks 1.1 (``warn``: say to
    write ``stage:``); an unknown name gets a did-you-mean over both registries."""
    key, name = stage_key(stage)
    own = registry.components(key)
    if name in own:
        return StageComponent(key, key, own[name].entry)
    other = "stage" if key == "optimizer" else "optimizer"
    theirs = registry.components(other)
    label = stage.get("name")
    if name in theirs and key == "optimizer":
        if warn:
            message = (f"pipeline stage '{label}': '{name}' trains nothing, so it moved to the stage registry "
                       f"(alignkit hooks 1.2); write `stage: {name}` instead of `optimizer: {name}` "
                       f"(docs/configuration.md, 'Training algorithms and stages')")
            warnings.warn(message, DeprecationWarning, stacklevel=2)
            log.info("alignkit: %s", message)
        return StageComponent(other, key, theirs[name].entry)
    if name in theirs:
        found = theirs[name]
        raise ConfigError(f"pipeline stage '{label}' says `stage: {name}`, but '{name}' is a training algorithm "
                          f"(alignkit_optimizers of plugin '{found.plugin_name}'): write `optimizer: {name}`")
    raise ConfigError(unknown_message(registry, key, name, label))


def unknown_message(registry: Registry, key: str, name: str, label: Any) -> str:
    """An unknown name: both registries' contents under their headings, and the closest name with
    the key that would run it."""
    contents = {kind: sorted(registry.components(kind)) for kind in KINDS}
    lines = [f"pipeline stage '{label}': unknown {key} '{name}' (no plugin registers it)."]
    lines += [f"{HOLDS[kind][0].upper()}{HOLDS[kind][1:]}: {', '.join(names) or '(none)'}."
              for kind, names in contents.items()]
    close = difflib.get_close_matches(name, [n for names in contents.values() for n in names], n=1)
    if close:
        kind = next(kind for kind in KINDS if close[0] in contents[kind])
        lines.append(f"Did you mean '{close[0]}' (`{kind}: {close[0]}`)?")
    failed = registry.failed_plugins_hint()
    if failed:
        lines.append(failed)
    return " ".join(lines)
