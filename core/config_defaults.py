"""Defaults declared once, in the dataclasses, and shown in the composed config all the same.

An option file of conf/ carries only what differs from its component's ``config_schema``; it
pulls the rest from Hydra's config store, where ``register_config_defaults`` puts every
registered schema's defaults before the config is composed::

    # conf/optimizer/dpo.yaml
    defaults:
      - /dataclass_defaults/optimizer/dpo@_here_   # DPOConfig's fields and their defaults
      - _self_
    name: dpo
    trainer: {learning_rate: 1.0e-05}             # what differs

So ``alignkit pipeline=dpo --cfg job`` still prints every option with its value. The stored
nodes are plain (untyped) dicts: checking keys and types stays the core's job
(``core/options.py``), with its did-you-mean errors.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
from typing import TYPE_CHECKING

from omegaconf import OmegaConf

if TYPE_CHECKING:
    from alignkit.core.registry import Registry

log = logging.getLogger("alignkit")

DEFAULTS_GROUP = "dataclass_defaults"
GROUP_OF_KIND = {"optimizer": "optimizer", "stage": "optimizer", "feedback_provider": "feedback",
                 "preference_model": "preference_model", "generator": "generation", "data_source": "data"}
"""Registry kind -> the config group whose option files build it (a stage's options, ``evaluate.*``, still
come from conf/optimizer/<name>.yaml, as before the stage registry)."""


def schema_defaults(schema: type) -> dict:
    """A dataclass's fields and defaults as a plain dict (a required field: ``???``)."""
    return copy.deepcopy(_schema_defaults(schema))


@functools.lru_cache(maxsize=None)
def _schema_defaults(schema: type) -> dict:
    # OmegaConf.structured is the slow part of composing a config: once per schema per process
    return OmegaConf.to_container(OmegaConf.structured(schema), resolve=False)


def register_config_defaults(registry: Registry) -> None:
    """Store ``dataclass_defaults/trainer`` (``TrainerConfig``) and, for every registered component
    with a dataclass schema, ``dataclass_defaults/<group>/<name>`` in Hydra's config store."""
    from hydra.core.config_store import ConfigStore

    from alignkit.core.engine import TrainerConfig

    store = ConfigStore.instance()
    store.store(group=DEFAULTS_GROUP, name="trainer", node=schema_defaults(TrainerConfig))
    for kind, group in GROUP_OF_KIND.items():
        for name, registered in registry.components(kind).items():
            schema = registered.entry.config_schema
            if schema is None or not dataclasses.is_dataclass(schema):
                continue
            try:
                node = schema_defaults(schema)
            except Exception as exc:  # a schema OmegaConf cannot read fails later, at validation, with its key
                log.debug("no config defaults for %s '%s': %s", kind, name, exc)
                continue
            store.store(group=f"{DEFAULTS_GROUP}/{group}", name=name, node=node)
