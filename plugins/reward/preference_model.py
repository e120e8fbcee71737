"""``preference_model=bradley_terry``: score responses with a trained reward model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from alignkit.core.errors import ConfigError
from alignkit.plugins.reward.bradley_terry import RewardModel


@dataclass
class BradleyTerryConfig:
    """Options of ``preference_model=bradley_terry``."""

    path: Optional[str] = None  # a reward model folder; null: the newest `reward_model` artifact of the run
    uncertainty_penalty: float = 0.0  # k in mean - k * std over the ensemble heads
    normalize: bool = False  # (r - mean) / std with the statistics saved at training time
    batch_size: int = 16
    max_length: Optional[int] = None  # null: the max_length it was trained with
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "float32"


def build(cfg: Any, ctx: Any) -> RewardModel:
    """factory(cfg, ctx): the model at ``cfg.path``, else the run's ``reward_model`` artifact."""
    path = cfg.get("path")
    if path:
        folder = Path(str(path)).expanduser()
        if not folder.exists():
            raise ConfigError(f"preference_model.path {folder} does not exist")
    else:
        folder = ctx.find_artifact("reward_model") if ctx is not None else None
        if folder is None:
            raise ConfigError(
                "preference_model=bradley_terry needs a reward model: set preference_model.path=<folder> or run "
                "a stage with optimizer=reward (e.g. a 'reward_model' stage) earlier in the pipeline")
    k = float(cfg.get("uncertainty_penalty", 0.0))
    if not (math.isfinite(k) and k >= 0):
        raise ConfigError(f"preference_model.uncertainty_penalty must be >= 0, not {k}")
    extra = {"max_length": int(cfg.max_length)} if cfg.get("max_length") else {}
    return RewardModel.from_pretrained(folder, device=str(cfg.get("device", "auto")),
                                       dtype=str(cfg.get("dtype", "float32")), uncertainty_penalty=k,
                                       normalize=bool(cfg.get("normalize", False)),
                                       batch_size=int(cfg.get("batch_size", 16)), **extra)
