"""The config hand-off: a component's config node becomes the options its factory receives.

Every registry entry may declare a ``config_schema`` dataclass. The core, and only the core,
checks the node against it (an unknown key or a value of the wrong type is a ``ConfigError``
naming the group and the key, with a did-you-mean) and hands the factory an *instance* of that
dataclass, so no component turns a node into its options by hand. Every factory is called the
same way, ``factory(options, ctx)``; what ``ctx`` is for each kind is written in
``core/hookspecs.py``. An entry without a schema gets the node as a ``DictConfig``.

A factory written for alignkit 1.0's ``factory(config)`` (one parameter; a logger's
``factory(config, run_dir)``) still works for one version: it is called as before, with the
validated ``DictConfig``, and a ``DeprecationWarning`` names its plugin (``factory_style``).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import inspect
import typing
import warnings
from typing import TYPE_CHECKING, Any, Literal

from omegaconf import DictConfig, OmegaConf

from alignkit.core.errors import ConfigError

if TYPE_CHECKING:
    from alignkit.core.registry import Registry

FactoryStyle = Literal["options_ctx", "config_only", "config_run_dir"]


def did_you_mean(unknown: list[str], allowed: Any) -> str:
    """`` (did you mean 'beta'?)`` for each unknown name with a close allowed one, else ``""``."""
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(allowed), n=1)
        if close:
            hints.append(f"'{close[0]}'" if len(unknown) == 1 else f"'{close[0]}' for '{name}'")
    return f" (did you mean {', '.join(hints)}?)" if hints else ""


def _plain(node: Any) -> dict:
    if node is None:
        return {}
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return dataclasses.asdict(node)
    return dict(node)


def _nested_schema(schema: type, field: dataclasses.Field) -> tuple[str, type] | None:
    """What dataclass a field holds and how: ``("one", C)`` for ``calibration: CalibrationConfig``
    (or Optional of it), ``("values", C)`` for ``sources: Dict[str, C]``; else None."""
    try:
        hint = typing.get_type_hints(schema).get(field.name, field.type)
    except Exception:  # an annotation that does not resolve: no nested check
        return None
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (dict, collections.abc.Mapping) and len(args) == 2:
        value = args[1]
        return ("values", value) if isinstance(value, type) and dataclasses.is_dataclass(value) else None
    for candidate in (hint, *args):  # Optional[Nested] too
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return "one", candidate
    return None


def _check_keys(where: str, schema: type, data: dict, prefix: str = "") -> None:
    allowed = {f.name: f for f in dataclasses.fields(schema)}
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        inside = f" option '{prefix[:-1]}'" if prefix else ""
        raise ConfigError(
            f"{where}{inside} has no option {', '.join(repr(prefix + u) for u in unknown)}"
            f"{did_you_mean(unknown, allowed)}; its options are: {', '.join(sorted(allowed))}"
        )
    for key, value in data.items():
        nested = _nested_schema(schema, allowed[key])
        if nested is None or not isinstance(value, dict):
            continue
        how, inner = nested
        if how == "one":
            _check_keys(where, inner, value, f"{prefix}{key}.")
        else:  # a mapping of name -> options (a mixture's sources)
            for name, item in value.items():
                if isinstance(item, dict):
                    _check_keys(where, inner, item, f"{prefix}{key}.{name}.")


def _has_name_field(schema: type) -> bool:
    return any(f.name == "name" for f in dataclasses.fields(schema))


def _merged(where: str, schema: type, data: dict) -> DictConfig:
    _check_keys(where, schema, data)
    try:
        return OmegaConf.merge(OmegaConf.structured(schema), data)
    except Exception as exc:  # omegaconf's validation error says which key and type
        key = getattr(exc, "full_key", None)
        msg = str(getattr(exc, "msg", "") or exc).splitlines()[0]
        raise ConfigError(f"{where} option '{key}': {msg}" if key else f"{where}: {msg}") from exc


def _instance(where: str, merged: DictConfig) -> Any:
    try:
        return OmegaConf.to_object(merged)
    except Exception as exc:  # a required option (MISSING) left unset
        key = getattr(exc, "full_key", None)
        raise ConfigError(f"{where} needs option '{key}': set it" if key else f"{where}: {exc}") from exc


def dataclass_options(schema: type, node: Any, where: str) -> Any:
    """``node`` (a DictConfig, a mapping or None) checked against the dataclass ``schema`` and returned
    as an instance; ``where`` starts the error messages (``"quality.judge"``). For options nested
    inside a component's own (a mixture's sources, a teacher)."""
    data = _plain(node)
    if not _has_name_field(schema):
        data.pop("name", None)
    return _instance(where, _merged(where, schema, data))


def validate_config(entry_kind: str, name: str, schema: type | None, node: Any) -> DictConfig:
    """Merge ``node`` into the entry's schema: unknown keys and wrong types are errors naming the
    group and the key. Returns a ``DictConfig`` that also carries ``name`` (what a 1.0 factory
    received); ``component_options`` turns it into the schema's instance."""
    node = OmegaConf.create({}) if node is None else node
    if schema is None:
        return node if isinstance(node, DictConfig) else OmegaConf.create(_plain(node))
    data = _plain(node)
    own_name = _has_name_field(schema)  # e.g. a logger's run name: the option, not the registry name
    if not own_name:
        data.pop("name", None)
    merged = _merged(f"{entry_kind} '{name}'", schema, data)
    OmegaConf.set_struct(merged, False)
    if not own_name:
        merged.name = name
    return merged


def options_instance(entry_kind: str, name: str, schema: type, validated: DictConfig) -> Any:
    """The schema's dataclass instance of a node ``validate_config`` checked."""
    data = OmegaConf.to_container(validated, resolve=True)
    if not _has_name_field(schema):
        data.pop("name", None)
    return _instance(f"{entry_kind} '{name}'", OmegaConf.merge(OmegaConf.structured(schema), data))


def component_options(entry_kind: str, entry: Any, node: Any) -> Any:
    """What ``entry.factory`` receives for ``node``: an instance of ``entry.config_schema``, or the
    node as a ``DictConfig`` when the entry declares no schema."""
    validated = validate_config(entry_kind, entry.name, entry.config_schema, node)
    if entry.config_schema is None:
        return validated
    return options_instance(entry_kind, entry.name, entry.config_schema, validated)


_STYLES: dict[Any, FactoryStyle] = {}


def factory_style(factory: Any, kind: str) -> FactoryStyle:
    """How to call ``factory``, read once from its signature: ``options_ctx`` (alignkit 1.1,
    ``factory(options, ctx)``), else a 1.0 factory: ``config_only`` (``factory(config)``) or,
    for a logger, ``config_run_dir`` (``factory(config, run_dir)``)."""
    key = (factory, kind)
    if key not in _STYLES:
        try:
            params = list(inspect.signature(factory).parameters.values())
        except (TypeError, ValueError):  # a builtin without a signature: assume the current convention
            params = []
            style: FactoryStyle = "options_ctx"
        else:
            positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
            if not varargs and len(positional) < 2:
                style = "config_only"
            elif kind == "logger" and not varargs and positional[1].name == "run_dir":
                style = "config_run_dir"
            else:
                style = "options_ctx"
        _STYLES[key] = style
    return _STYLES[key]


def build_component(registry: Registry, kind: str, name: str, node: Any, ctx: Any,
                    group: str | None = None) -> Any:
    """Build the ``kind`` component ``name`` from its config ``node``: validate it into the entry's
    ``config_schema`` and call ``factory(options, ctx)``. ``group`` names the config group in
    error messages (default: the kind). The one place a factory is called."""
    registered = registry.components(kind).get(name)
    entry = registered.entry if registered is not None else registry.get(kind, name)  # get: did-you-mean
    group = group or kind
    style = factory_style(entry.factory, kind)
    if style == "options_ctx":
        return entry.factory(component_options(group, entry, node), ctx)
    plugin = f"plugin '{registered.plugin_name}' (package '{registered.package}')" if registered else "a plugin"
    call = "factory(config, run_dir)" if style == "config_run_dir" else "factory(config)"
    warnings.warn(
        f"{kind} '{entry.name}' of {plugin} has the alignkit 1.0 signature {call}; alignkit 1.1 calls "
        f"factory(options, ctx) with an instance of its config_schema (docs/plugins/writing-plugins.md). "
        f"The old call keeps working for this version only.",
        DeprecationWarning, stacklevel=2)
    config = validate_config(group, entry.name, entry.config_schema, node)
    if style == "config_run_dir":
        return entry.factory(config, ctx.run_dir.path)
    return entry.factory(config)
