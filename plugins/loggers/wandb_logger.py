"""``wandb`` logger: the real library, imported lazily; offline by default."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional


@dataclass
class WandbConfig:
    project: str = "alignkit"
    entity: Optional[str] = None
    mode: str = "offline"  # online | offline | disabled
    name: Optional[str] = None


class WandbLogger:
    def __init__(self, config: WandbConfig, ctx: Any) -> None:
        """``ctx``: the RunContext (loggers serve the whole run)."""
        import wandb  # heavy: only when selected

        run_dir = Path(ctx.run_dir.path)

        self._wandb = wandb
        self.run = wandb.init(project=config.project, entity=config.entity, mode=config.mode,
                              name=config.name or run_dir.name, dir=str(run_dir), reinit="finish_previous")

    def log(self, stage: str, step: int, metrics: Mapping[str, float]) -> None:
        self.run.log({f"{stage}/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})

    def close(self, summary: Mapping[str, Any]) -> None:
        for stage, record in summary.get("stages", {}).items():
            for key, value in record.get("metrics", {}).items():
                if isinstance(value, (int, float)):
                    self.run.summary[f"{stage}/{key}"] = value
        self.run.finish()
