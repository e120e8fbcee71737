"""The task a data source declares, and the stage options that defer to it.

A pipeline that checks answers (label only the prompts a rule can verify, evaluate with the task's
rewards) does not name the demo's functions: it sets ``prompt_filter: task`` and ``scorers: [task]``,
and the run uses what the configured data declares (``interfaces.TaskDeclaration``): the demo data
its arithmetic rule, ``data=files`` its ``task.verifier`` / ``task.scorers``, a plugin's source what
it declares. A source that declares nothing leaves every prompt in and adds no scorer, so the same
pipeline runs on anyone's prompts without nulling overrides. A stage option that names a function
(or ``null``: every prompt) is used as given.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from omegaconf import ListConfig

T = TypeVar("T")

TASK = "task"
"""The value of ``prompt_filter`` (or an entry of ``scorers``) that means: what the data declares."""


@dataclass(frozen=True)
class Task:
    """What a data source's prompts ask: ``verifier`` (``package.module:function(prompt) -> bool``,
    the prompts whose answers can be checked; None: every prompt) and ``scorers``
    (``package.module:function(prompt_messages, response) -> float``, the task's rewards)."""

    verifier: str | None = None
    scorers: tuple[str, ...] = ()


def declared_task(data: Any) -> Task:
    """The task ``data`` declares, or the empty ``Task`` for a source that declares none."""
    from alignkit.core.interfaces import TaskDeclaration

    if not isinstance(data, TaskDeclaration):
        return Task()
    verifier = data.task_verifier
    return Task(verifier=str(verifier) if verifier else None, scorers=tuple(str(s) for s in data.task_scorers or ()))


def _option(options: Any, key: str) -> Any:
    return options.get(key) if hasattr(options, "get") else getattr(options, key, None)


def defers_to_task(options: Any) -> bool:
    """Whether a stage's options say ``prompt_filter: task`` or list ``task`` among ``scorers``."""
    scorers = _option(options, "scorers")
    return _option(options, "prompt_filter") == TASK or (
        isinstance(scorers, (list, tuple, ListConfig)) and TASK in list(scorers))


def resolve_task(options: T, data: Callable[[], Any]) -> T:
    """``options`` (a ``DictConfig`` or an options dataclass) with ``prompt_filter: task`` replaced by
    the data's verifier and each ``task`` entry of ``scorers`` by the data's scorers (the others kept,
    in order, once each); ``options`` itself is left as it was. ``data`` is called only when an option
    defers to the task (building a data source reads its files)."""
    if not defers_to_task(options):
        return options
    task = declared_task(data())
    changes: dict[str, Any] = {}
    if _option(options, "prompt_filter") == TASK:
        changes["prompt_filter"] = task.verifier
    scorers = _option(options, "scorers")
    if isinstance(scorers, (list, tuple, ListConfig)) and TASK in list(scorers):
        expanded: list[str] = []
        for spec in scorers:
            for name in (task.scorers if spec == TASK else (str(spec),)):
                if name not in expanded:
                    expanded.append(name)
        changes["scorers"] = expanded
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        return dataclasses.replace(options, **changes)
    out = copy.deepcopy(options)  # keeps a structured config's schema
    for key, value in changes.items():
        out[key] = value
    return out
