"""``console`` logger: a line per logged step (when the progress bar is off) and a final table."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping


@dataclass
class ConsoleConfig:
    every_step: bool = False  # print each logged step (the progress bar already shows the loss)


class ConsoleLogger:
    def __init__(self, options: ConsoleConfig, ctx: Any) -> None:
        """``ctx``: the RunContext (loggers serve the whole run)."""
        self.every_step = bool(options.every_step)
        self.run_dir = Path(ctx.run_dir.path)

    def log(self, stage: str, step: int, metrics: Mapping[str, float]) -> None:
        if self.every_step:
            shown = " ".join(f"{k}={_fmt(v)}" for k, v in sorted(metrics.items()))
            print(f"[{stage} {step}] {shown}", file=sys.stderr)

    def close(self, summary: Mapping[str, Any]) -> None:
        out = sys.stderr
        print(f"\npipeline {summary.get('pipeline')}: {summary.get('status')}", file=out)
        for stage, record in summary.get("stages", {}).items():
            print(f"  stage {stage}: {record.get('status')}", file=out)
            for key, value in sorted(record.get("metrics", {}).items()):
                print(f"    {key:<32} {_fmt(value)}", file=out)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
