"""Built-in plugin: the ``evaluate`` stage and training-time alarms (``diagnostics:``)."""

from __future__ import annotations

import weakref
from typing import Any, Mapping

from alignkit.core import OptimizerEntry, hookimpl

_monitors: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


@hookimpl
def alignkit_optimizers():
    from alignkit.plugins.evaluation.evaluate import EvaluateConfig, Evaluator

    yield OptimizerEntry(
        name="evaluate",
        factory=Evaluator,
        config_schema=EvaluateConfig,
        description="Policy vs reference: reward, win rate, KL, length, diversity, refusals, sycophancy; report.md.",
    )


def _diagnostics_config(cfg: Any) -> Any:
    from omegaconf import OmegaConf

    from alignkit.core.pipeline import validate_config
    from alignkit.plugins.evaluation.diagnostics import DiagnosticsConfig

    node = cfg.get("diagnostics") if cfg is not None else None
    data = OmegaConf.to_container(validate_config("diagnostics", "diagnostics", DiagnosticsConfig, node), resolve=True)
    data.pop("name", None)
    return DiagnosticsConfig(**data)


@hookimpl
def alignkit_configure(cfg: Any) -> None:
    _diagnostics_config(cfg)  # a bad key fails before any work, naming the options


@hookimpl
def alignkit_after_step(run: Any, stage: str, step: int, metrics: Mapping[str, float]) -> None:
    from alignkit.plugins.evaluation.diagnostics import Monitor, report

    monitor = _monitors.get(run)
    if monitor is None:
        monitor = _monitors[run] = Monitor(_diagnostics_config(run.cfg))
    alarms = monitor.observe(stage, step, metrics)
    if alarms:
        report(run.run_dir.path, alarms, monitor.config.stop)
        if monitor.config.stop:
            run.request_stop()
