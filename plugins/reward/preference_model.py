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
    stage: Optional[str] = None  # or: the `reward_model` of this earlier stage (reward_helpful, reward_safe)
    uncertainty_penalty: float = 0.0  # k in mean - k * std over the ensemble heads
    normalize: bool = False  # (r - mean) / std with the statistics saved at training time
    batch_size: int = 16
    max_length: Optional[int] = None  # null: the max_length it was trained with
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "float32"


def build(options: BradleyTerryConfig, ctx: Any) -> RewardModel:
    """factory(options, ctx): the model at ``path``, else the ``reward_model`` artifact of ``stage``,
    else the newest ``reward_model`` artifact of the run."""
    o = options
    if o.path and o.stage:
        raise ConfigError(f"preference_model=bradley_terry: set path={o.path} or stage={o.stage}, not both")
    if o.path:
        folder = Path(str(o.path)).expanduser()
        if not folder.exists():
            raise ConfigError(f"preference_model.path {folder} does not exist")
    else:
        folder = _artifact(ctx, o.stage)
    k = float(o.uncertainty_penalty)
    if not (math.isfinite(k) and k >= 0):
        raise ConfigError(f"preference_model.uncertainty_penalty must be >= 0, not {k}")
    extra = {"max_length": int(o.max_length)} if o.max_length else {}
    return RewardModel.from_pretrained(folder, device=str(o.device), dtype=str(o.dtype), uncertainty_penalty=k,
                                       normalize=bool(o.normalize), batch_size=int(o.batch_size), **extra)


def _artifact(ctx: Any, stage: Optional[str]) -> Path:
    """The ``reward_model`` an earlier stage of the run left: ``stage``'s, else the newest."""
    folder = ctx.find_artifact("reward_model", stage or None) if ctx is not None else None
    if folder is not None:
        return folder
    if not stage:
        raise ConfigError(
            "preference_model=bradley_terry needs a reward model: set preference_model.path=<folder> or run "
            "a stage with optimizer=reward (e.g. a 'reward_model' stage) earlier in the pipeline")
    previous = getattr(ctx, "previous", None) or {}
    trained = [name for name, result in previous.items() if "reward_model" in result.artifacts]
    why = f"stage '{stage}' left no reward model" if stage in previous else \
        f"no stage named '{stage}' ran before stage '{getattr(ctx, 'name', '?')}'"
    raise ConfigError(f"preference_model.stage={stage}: {why}; the earlier stages that trained one: "
                      f"{', '.join(trained) or 'none'}")
