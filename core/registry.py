"""A typed wrapper over the plugin manager: no call site touches ``pm.hook`` directly."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from alignkit.core.errors import ConfigError, PluginError
from alignkit.core.manager import distribution_of, get_plugin_manager, plugin_failures, record_failure
from alignkit.core.types import (
    ENTRY_KINDS,
    RL_PART_KINDS,
    AdvantageEstimatorEntry,
    CommandEntry,
    DataSourceEntry,
    FeedbackProviderEntry,
    GeneratorEntry,
    LoadedModel,
    LoggerEntry,
    ModelRole,
    ModelSpec,
    OptimizerEntry,
    PolicyLossEntry,
    PreferenceModelEntry,
    RegistryEntry,
    StageEntry,
)

if TYPE_CHECKING:
    import pluggy

_HOOK_OF_KIND = {
    DataSourceEntry.kind: "alignkit_data_sources",
    FeedbackProviderEntry.kind: "alignkit_feedback_providers",
    PreferenceModelEntry.kind: "alignkit_preference_models",
    OptimizerEntry.kind: "alignkit_optimizers",
    StageEntry.kind: "alignkit_stages",
    LoggerEntry.kind: "alignkit_loggers",
    GeneratorEntry.kind: "alignkit_generators",
    AdvantageEstimatorEntry.kind: "alignkit_advantage_estimators",
    PolicyLossEntry.kind: "alignkit_policy_losses",
    CommandEntry.kind: "alignkit_commands",
}
_ENTRY_TYPE = {cls.kind: cls for cls in (*ENTRY_KINDS, *RL_PART_KINDS, CommandEntry)}
HOLDS = {
    "advantage_estimator": "advantage estimators of on-policy RL (optimizer.advantage=NAME)",
    "command": "commands (alignkit NAME ...)",
    "data_source": "data sources (data=NAME)",
    "feedback_provider": "feedback providers (feedback=NAME)",
    "generator": "generation backends (generation=NAME)",
    "logger": "metric sinks (logger.enabled=[NAME])",
    "optimizer": "training algorithms (a pipeline stage says `optimizer: NAME`)",
    "policy_loss": "policy losses of on-policy RL (optimizer.policy_loss=NAME)",
    "preference_model": "preference models (preference_model=NAME)",
    "stage": "stages that sample, label or evaluate (a pipeline stage says `stage: NAME`)",
}
"""What each registry kind holds, in words: ``alignkit plugins`` headings and unknown-name errors."""


@dataclass(frozen=True)
class Registered:
    """An entry with the plugin and package that provided it."""

    entry: RegistryEntry
    plugin_name: str
    package: str


class Registry:
    """Named components by kind, read once from the registry hooks."""

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm if pm is not None else get_plugin_manager()
        self._cache: dict[str, dict[str, Registered]] = {}

    # -- registries ------------------------------------------------------------------
    def components(self, kind: str) -> Mapping[str, Registered]:
        if kind not in _HOOK_OF_KIND:
            raise KeyError(f"unknown component kind {kind!r}; kinds: {sorted(_HOOK_OF_KIND)}")
        if kind not in self._cache:
            self._cache[kind] = self._collect(kind)
        return self._cache[kind]

    def _collect(self, kind: str) -> dict[str, Registered]:
        hook = getattr(self.pm.hook, _HOOK_OF_KIND[kind])
        found: dict[str, Registered] = {}
        trace = self.pm.trace.root.get("hook")
        for impl in hook.get_hookimpls():
            # Called one plugin at a time to know who provided each record; traced like pm.hook.
            trace(f"{_HOOK_OF_KIND[kind]} [{impl.plugin_name}]")
            records = self._call_plugin(impl, _HOOK_OF_KIND[kind])
            for entry in records:
                if not isinstance(entry, _ENTRY_TYPE[kind]):
                    raise PluginError(
                        f"plugin '{impl.plugin_name}' returned {type(entry).__name__} from "
                        f"{_HOOK_OF_KIND[kind]}; expected {_ENTRY_TYPE[kind].__name__}"
                    )
                here = Registered(entry, impl.plugin_name, distribution_of(impl.plugin))
                if entry.name in found:
                    there = found[entry.name]
                    raise PluginError(
                        f"{kind} '{entry.name}' is registered twice: by plugin "
                        f"'{there.plugin_name}' (package '{there.package}') and by plugin "
                        f"'{here.plugin_name}' (package '{here.package}')"
                    )
                found[entry.name] = here
        return found

    def _call_plugin(self, impl: Any, hook_name: str) -> list[Any]:
        """One plugin's results of a registry hook; a plugin that raises is skipped with a
        warning naming its package (``ALIGNKIT_STRICT_PLUGINS=1``: an error) instead of
        taking every other plugin down."""
        try:
            return list(impl.function() or ())
        except Exception as exc:
            record_failure(self.pm, impl.plugin_name, distribution_of(impl.plugin),
                           f"{hook_name} raised {type(exc).__name__}: {exc}")
            return []

    def get(self, kind: str, name: str) -> RegistryEntry:
        """The entry named ``name``; an unknown name lists the available ones."""
        available = self.components(kind)
        if name in available:
            return available[name].entry
        close = difflib.get_close_matches(name, list(available), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        failed = self.failed_plugins_hint()
        if failed:
            hint += " " + failed
        raise ConfigError(
            f"unknown {kind} '{name}'. Available: {', '.join(sorted(available)) or '(none)'}.{hint}"
        )

    def failed_plugins_hint(self) -> str:
        """The sentence an unknown-name error ends with when plugins failed to load ("" when none did):
        the name may be theirs."""
        failed = plugin_failures(self.pm)
        if not failed:
            return ""
        return "These plugins failed to load and may provide it: " + "; ".join(
            f"'{f.plugin}' from package '{f.package}' ({f.message})" for f in failed) + "."

    def all(self) -> Iterator[tuple[str, Registered]]:
        for kind in _HOOK_OF_KIND:
            for reg in self.components(kind).values():
                yield kind, reg

    # -- other hooks -----------------------------------------------------------------
    def config_searchpath(self) -> list[str]:
        paths: list[str] = []
        for impl in reversed(self.pm.hook.alignkit_config_searchpath.get_hookimpls()):
            for path in self._call_plugin(impl, "alignkit_config_searchpath"):
                if path not in paths:
                    paths.append(path)
        return paths

    def load_model(self, spec: ModelSpec, role: ModelRole = "policy") -> LoadedModel:
        loaded = self.pm.hook.alignkit_load_model(spec=spec, role=role)
        if loaded is None:
            raise ConfigError(
                f"no plugin could load model '{spec.name_or_path}': it is not an alias, a local "
                f"directory, a .gguf file or a reachable hub id"
            )
        return loaded

    @property
    def hook(self) -> Any:
        """Lifecycle hooks (``configure``, ``before_run``, ...) for the stage runner."""
        return self.pm.hook
