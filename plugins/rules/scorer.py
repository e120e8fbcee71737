"""``preference_model=rule``: scores responses with a user function instead of a learned model.

Verifiable tasks (arithmetic, unit tests, formats) need no reward model; the function is
named in the config as ``package.module:function`` and called once per (prompt, response).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch

from alignkit.core.callables import call_scorer, load_callable
from alignkit.core.errors import ConfigError


@dataclass
class RuleConfig:
    """Options of ``preference_model=rule``."""

    fn: Optional[str] = None  # package.module:function(prompt_messages, response_text) -> float
    scale: float = 1.0  # the reward is scale * fn(...) + shift
    shift: float = 0.0


class RuleScorer:
    """Implements ``PreferenceModel``: ``score(prompts, responses)`` -> float32 tensor [N]."""

    def __init__(self, fn: Callable[..., Any], spec: str, scale: float = 1.0, shift: float = 0.0) -> None:
        self.fn, self.spec, self.scale, self.shift = fn, spec, scale, shift

    @classmethod
    def from_config(cls, cfg: RuleConfig, ctx: Any = None) -> RuleScorer:
        """factory(options, ctx): ``cfg`` is the validated ``RuleConfig``."""
        spec = str(cfg.fn or "")
        if not spec:
            raise ConfigError("preference_model=rule needs preference_model.fn=package.module:function "
                              "(e.g. alignkit.plugins.rules.demo:arithmetic_correct)")
        fn = load_callable(spec, what="preference_model.fn")
        return cls(fn, spec, float(cfg.scale), float(cfg.shift))

    def score(self, prompts: Sequence[Any], responses: Sequence[str]) -> torch.Tensor:
        if len(prompts) != len(responses):
            raise ValueError(f"rule {self.spec!r}: {len(prompts)} prompts but {len(responses)} responses")
        values = [call_scorer(self.fn, self.spec, p, r) for p, r in zip(prompts, responses)]
        return torch.tensor(values, dtype=torch.float32) * self.scale + self.shift
