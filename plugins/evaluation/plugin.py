"""Built-in plugin: the ``evaluate`` stage and training-time alarms (``diagnostics:``)."""

from __future__ import annotations

import weakref
from typing import Any, Mapping

from alignkit.core import CommandEntry, StageEntry, hookimpl

_monitors: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


@hookimpl
def alignkit_stages():
    from alignkit.plugins.evaluation.evaluate import EvaluateConfig, Evaluator

    yield StageEntry(
        name="evaluate",
        factory=Evaluator,
        config_schema=EvaluateConfig,
        description="Policy vs reference: reward, win rate, KL, length, diversity, refusals, sycophancy; report.md.",
    )


def _diagnostics_config(cfg: Any) -> Any:
    from alignkit.core.options import options_instance, validate_config
    from alignkit.plugins.evaluation.diagnostics import DiagnosticsConfig

    node = cfg.get("diagnostics") if cfg is not None else None
    return options_instance("diagnostics", "diagnostics", DiagnosticsConfig,
                            validate_config("diagnostics", "diagnostics", DiagnosticsConfig, node))


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


def evaluate_command(argv: list[str]) -> int:
    from alignkit.plugins.evaluation.cli import evaluate_command as run

    return run(argv)


def report_command(argv: list[str]) -> int:
    from alignkit.plugins.evaluation.cli import report_command as run

    return run(argv)


@hookimpl
def alignkit_commands():
    yield CommandEntry(name="evaluate", run=evaluate_command, usage="RUN_DIR [key=value ...]",
                       help="evaluate a finished run against its reference model")
    yield CommandEntry(name="report", run=report_command, usage="DIR... [--kl-budget X]",
                       help="compare runs: a table ranked by a metric, the metric-vs-KL frontier")
