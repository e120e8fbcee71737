"""What the fixtures and the contract suites share: compose the config as the CLI does, build a
stage's context without running anything, load the ``tiny-random`` model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from alignkit.core.registry import Registry


EVALUATE_FAST = (  # the evaluate stage that ends every pipeline, sized for tests
    "evaluate.num_prompts=4",
    "evaluate.max_new_tokens=8",
    "evaluate.safety_prompts=2",
    "evaluate.sycophancy_prompts=2",
    "evaluate.embedding=false",
)

FAST_OVERRIDES = (
    "model=tiny-random",
    "logger=none",
    "trainer.max_steps=2",
    "trainer.batch_size=2",
    "trainer.max_length=96",
    "trainer.progress=false",
    "trainer.checkpoint_every=0",
    *EVALUATE_FAST,
)


def compose(overrides: Sequence[str] = (), registry: Registry | None = None) -> Any:
    """Compose the alignkit config as the CLI would (plugin config roots on the search path, the
    schema defaults registered) and record the overrides in ``HydraConfig`` as ``@hydra.main``
    does, so ``trainer.*`` on this command line outranks a stage's own settings as it would there."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from alignkit.core.cli import CONFIG_MODULE, CONFIG_NAME, rewrite_overrides
    from alignkit.core.config_defaults import register_config_defaults
    from alignkit.core.pipeline import as_hydra_job

    reg = registry or Registry()
    args = rewrite_overrides(list(overrides), reg.config_searchpath())
    register_config_defaults(reg)
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return as_hydra_job(hydra_compose(CONFIG_NAME, overrides=args, return_hydra_config=True))


def with_plugins(pm: Any, plugins: Sequence[Any]) -> Any:
    """Register ``plugins`` (modules or objects) on ``pm`` unless already there; returns ``pm``."""
    for plugin in plugins:
        if not pm.is_registered(plugin):
            pm.register(plugin, name=getattr(plugin, "__name__", None))
    return pm


def make_stage_context(registry: Registry, run_dir: Path, overrides: Sequence[str] = (), fast: bool = True) -> Any:
    """The ``StageContext`` of the last stage of the composed pipeline, with nothing run:
    what a feedback provider's or preference model's factory receives."""
    from omegaconf import OmegaConf

    from alignkit.core.pipeline import RunContext, StageContext, stage_plan
    from alignkit.core.rundir import RunDir

    cfg = compose([*(FAST_OVERRIDES if fast else ()), *overrides], registry)
    plan = stage_plan(cfg)
    name = str(plan[-1].name)
    run = RunContext(cfg, registry, RunDir(run_dir, pipeline=str(cfg.pipeline.name)))
    return StageContext(run=run, name=name, index=len(plan), dir=run.run_dir.stage_dir(len(plan), name),
                        config=OmegaConf.create({}), trainer=cfg.trainer, policy=run.model_spec(), previous={})


def load_tiny_model() -> Any:
    """The ``tiny-random`` model and tokenizer (random weights, seed 0): a ``LoadedModel``."""
    from alignkit.core.types import ModelSpec

    spec = ModelSpec("tiny-random", options={"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                                             "num_key_value_heads": 4, "intermediate_size": 256, "seed": 0})
    return Registry().load_model(spec, "policy")


def registry_with(plugins: Sequence[Any] = ()) -> Registry:
    """A fresh registry over the installed plugins plus ``plugins`` (not-yet-installed modules)."""
    from alignkit.core.manager import get_plugin_manager

    return Registry(with_plugins(get_plugin_manager(), plugins))
