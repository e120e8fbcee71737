"""Training-time alarms: KL over budget, entropy collapse, runaway length.

The ``alignkit_after_step`` hook hands every logged step's metrics to a ``Monitor``, which
finds the series by name (glob patterns, so any optimizer that logs ``kl``, ``entropy`` or
``response_length`` under some prefix is watched) and compares them with limits from the
top-level ``diagnostics:`` config node. An alarm is a warning in the console and the log, a
line in ``<run_dir>/alarms.jsonl`` and, with ``diagnostics.stop=true``, a request to end the
stage (it still saves its model).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

log = logging.getLogger("alignkit")

ALARMS = "alarms.jsonl"


@dataclass
class DiagnosticsConfig:
    """The top-level ``diagnostics:`` node."""

    enabled: bool = True
    every: int = 1  # check every N-th logged step
    stop: bool = False  # also end the stage on an alarm
    kl_budget: Optional[float] = None  # alarm when a logged KL series passes it (nats per response)
    entropy_floor: Optional[float] = None  # alarm when entropy falls below it (nats per token)
    entropy_collapse: float = 0.25  # ... or below this fraction of its first logged value
    max_response_length: Optional[float] = None  # alarm when mean response length passes it
    length_growth: float = 3.0  # ... or grows past this multiple of its first logged value
    skip_stages: list[str] = field(default_factory=lambda: ["evaluate"])
    # Which logged series are watched (glob patterns over metric names).
    kl_metrics: list[str] = field(default_factory=lambda: [
        "kl", "*/kl", "kl_per_sequence", "*/kl_per_sequence", "mean_kl", "*/mean_kl"])
    entropy_metrics: list[str] = field(default_factory=lambda: [
        "entropy", "*/entropy", "entropy_mean", "*/entropy_mean"])
    length_metrics: list[str] = field(default_factory=lambda: [
        "response_length", "*/response_length", "response_length_mean", "*/response_length_mean",
        "sample_length", "*/sample_length"])


@dataclass
class Alarm:
    stage: str
    step: int
    kind: str  # kl_budget | entropy_collapse | runaway_length
    metric: str
    value: float
    limit: float
    message: str


def matching(metrics: Mapping[str, Any], patterns: list[str]) -> dict[str, float]:
    """The finite numeric metrics whose names match one of the glob ``patterns``."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        if any(fnmatch.fnmatchcase(key, p) for p in patterns):
            out[key] = float(value)
    return out


class Monitor:
    """Watches one run's metric stream; each alarm kind fires once per stage and metric."""

    def __init__(self, config: DiagnosticsConfig) -> None:
        self.config = config
        self.first: dict[tuple[str, str], float] = {}
        self.fired: set[tuple[str, str, str]] = set()
        self.seen: dict[str, int] = {}

    def observe(self, stage: str, step: int, metrics: Mapping[str, Any]) -> list[Alarm]:
        c = self.config
        if not c.enabled or stage in c.skip_stages:
            return []
        self.seen[stage] = self.seen.get(stage, 0) + 1
        for key, value in {**matching(metrics, c.entropy_metrics), **matching(metrics, c.length_metrics)}.items():
            self.first.setdefault((stage, key), value)
        if self.seen[stage] % max(1, c.every):
            return []
        alarms: list[Alarm] = []
        if c.kl_budget is not None:
            for key, value in matching(metrics, c.kl_metrics).items():
                if value > c.kl_budget:
                    alarms += self._fire(stage, step, "kl_budget", key, value, c.kl_budget,
                                         f"{key} = {value:.4g} passed the KL budget {c.kl_budget:g}")
        for key, value in matching(metrics, c.entropy_metrics).items():
            first = self.first[(stage, key)]
            limits = [(c.entropy_floor, "the floor")] if c.entropy_floor is not None else []
            if first > 0:
                limits.append((c.entropy_collapse * first, f"{c.entropy_collapse:g} x its first value {first:.4g}"))
            for limit, what in limits:
                if value < limit:
                    alarms += self._fire(stage, step, "entropy_collapse", key, value, limit,
                                         f"{key} = {value:.4g} fell below {what} ({limit:.4g}): the policy is "
                                         f"collapsing onto few outputs")
                    break
        for key, value in matching(metrics, c.length_metrics).items():
            first = self.first[(stage, key)]
            limits = [(c.max_response_length, "the maximum")] if c.max_response_length is not None else []
            if first > 0:
                limits.append((c.length_growth * first, f"{c.length_growth:g} x its first value {first:.4g}"))
            for limit, what in limits:
                if value > limit:
                    alarms += self._fire(stage, step, "runaway_length", key, value, limit,
                                         f"{key} = {value:.4g} grew past {what} ({limit:.4g}): responses are "
                                         f"running away in length")
                    break
        return alarms

    def _fire(self, stage: str, step: int, kind: str, key: str, value: float, limit: float,
              message: str) -> list[Alarm]:
        if (stage, kind, key) in self.fired:
            return []
        self.fired.add((stage, kind, key))
        return [Alarm(stage, step, kind, key, value, limit, f"stage '{stage}' step {step}: {message}")]


def report(run_dir: Path, alarms: list[Alarm], stopping: bool) -> None:
    """Console, log and ``alarms.jsonl``."""
    with open(Path(run_dir) / ALARMS, "a", encoding="utf-8") as fh:
        for alarm in alarms:
            fh.write(json.dumps(asdict(alarm)) + "\n")
    for alarm in alarms:
        suffix = " Stopping the stage (diagnostics.stop=true)." if stopping else ""
        log.warning("alarm: %s%s", alarm.message, suffix)
        print(f"alignkit: alarm: {alarm.message}{suffix}", file=sys.stderr)


def read_alarms(run_dir: Path) -> list[dict[str, Any]]:
    file = Path(run_dir) / ALARMS
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
