"""What every component contract shares: the registry it is looked up in, its description, and
building it as a stage (or the run, for a data source) builds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pytest

from alignkit.core.registry import Registry
from alignkit.core.testing.helpers import make_stage_context, registry_with


def _component_node(registry: Registry, group: str, name: str, overrides: Sequence[str], run_dir: Path) -> Any:
    """A StageContext and the config node of ``group=name``; a component without a group file
    gets ``{name: <name>}`` plus nothing else."""
    from hydra.errors import MissingConfigException
    from omegaconf import OmegaConf

    try:
        ctx = make_stage_context(registry, run_dir, [f"{group}={name}", *overrides])
        return ctx, ctx.run.cfg.get(group)
    except MissingConfigException:  # no conf/<group>/<name>.yaml: build from the schema defaults
        ctx = make_stage_context(registry, run_dir, overrides)
        return ctx, OmegaConf.create({"name": name})


class _ComponentContract:
    name: str = ""
    """The registry name of the component under test."""
    overrides: Sequence[str] = ()
    """Extra config overrides (``"feedback.temperature=2"``, ...); ``{tmp}`` in one becomes a fresh
    temporary folder (``"feedback.db=sqlite:///{tmp}/labels.db"``)."""
    plugins: Sequence[Any] = ()
    """Plugin modules to register that are not installed (an installed plugin needs nothing)."""
    kind: str = ""
    group: str = ""

    # Class-scoped fixtures are classmethods: pytest 9 deprecates instance-method ones
    # (PytestRemovedIn10Warning) and pytest 10 removes them. Override one the same way.
    @pytest.fixture(scope="class")
    @classmethod
    def contract_registry(cls) -> Registry:
        if not cls.name:
            pytest.fail(f"{cls.__name__} must set `name` to the component's registry name")
        return registry_with(cls.plugins)

    @pytest.fixture(scope="class")
    @classmethod
    def contract_overrides(cls) -> Sequence[str]:
        """Overrides known only at test time, added after ``overrides``: override this fixture to
        ask another fixture for them (the folder of a reward model a session fixture trained:
        ``["preference_model=bradley_terry", f"preference_model.path={trained}"]``)."""
        return ()

    def test_is_registered_with_a_description(self, contract_registry):
        import dataclasses

        available = contract_registry.components(self.kind)
        assert self.name in available, f"no {self.kind} '{self.name}'; registered: {sorted(available)}"
        entry = available[self.name].entry
        assert entry.description.strip(), f"{self.kind} '{self.name}' needs a one-line description"
        schema = entry.config_schema
        assert schema is None or dataclasses.is_dataclass(schema), "config_schema must be a dataclass"

    @classmethod
    def _build(cls, registry: Registry, tmp_path_factory: Any, extra: Sequence[str] = ()) -> Any:
        """The component as a stage (or the run, for a data source) builds it; ``extra``: the
        ``contract_overrides``."""
        tmp = tmp_path_factory.mktemp(f"contract-{cls.name}")
        overrides = [o.replace("{tmp}", str(tmp)) for o in (*cls.overrides, *extra)]
        ctx, node = _component_node(registry, cls.group, cls.name, overrides, tmp / "run")
        if cls.kind == "feedback_provider":
            return ctx.feedback(node)
        if cls.kind == "preference_model":
            return ctx.preference_model(node)
        from alignkit.core.options import build_component

        # data sources and generators serve the whole run: their ctx is the RunContext
        return build_component(registry, cls.kind, cls.name, node, ctx.run,
                               group="data source" if cls.kind == "data_source" else cls.group)
