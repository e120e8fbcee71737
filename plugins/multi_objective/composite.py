"""``preference_model=composite``: several preference models scoring the same responses, one reward.

Each member is any preference model (``bradley_terry``, ``rule``, ``judge``, even another
``composite``), built through the run's registry by the stage context that builds the composite,
so its options are validated exactly as ``preference_model=<member>`` would be. A combiner
(``combiners.py``) turns the members' scores into one. The last batch's member scores, the
combined score and the Lagrange multiplier are kept for the stage to log (``last_metrics``,
``last_scores``: ``alignkit.core.interfaces.ExplainedScores``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import torch

from alignkit.core.callables import load_callable
from alignkit.core.errors import ConfigError
from alignkit.plugins.multi_objective import combiners as C

COMBINERS = ("weighted", "llama2", "constrained")


@dataclass
class CompositeConfig:
    """Options of ``preference_model=composite`` (conf/preference_model/composite.yaml)."""

    members: Dict[str, Any] = field(default_factory=dict)  # name -> a preference model node {name: rule, fn: ...}
    combiner: str = "weighted"  # weighted | llama2 | constrained
    weights: Dict[str, float] = field(default_factory=dict)  # weighted: member -> weight (missing: 1.0)
    normalise: str = "running"  # weighted (each member), llama2 (the whitening): running | batch | none
    helpfulness_member: str = "helpful"  # llama2: R_h; constrained: the reward r
    safety_member: str = "safe"  # llama2: R_s
    safety_prompt: Optional[str] = None  # llama2: package.module:function(prompt) -> bool, IS_SAFETY(p)
    safety_threshold: float = 0.15  # llama2: R_s below it (on the sigmoid scale) decides
    member_scale: str = "logit"  # llama2: members return logits (bradley_terry) | probability (rules, judge)
    cost_member: str = "cost"  # constrained: the cost c (higher = worse)
    cost_budget: float = 0.0  # constrained: keep the mean cost at or below it
    lambda_init: float = 1.0  # constrained: the Lagrange multiplier at the first step
    lambda_lr: float = 0.1  # constrained: its step size
    lambda_update: bool = True  # constrained: update lambda after every scored batch (false: fixed)


class CompositeScorer:
    """Implements ``PreferenceModel`` and ``ExplainedScores``."""

    def __init__(self, members: Mapping[str, Any], cfg: Any,
                 is_safety: Optional[Callable[[Any], Any]] = None) -> None:
        self.members = dict(members)
        self.combiner = str(cfg.combiner)
        self.weights = {str(k): float(v) for k, v in dict(cfg.weights or {}).items()}
        self.helpfulness, self.safety = str(cfg.helpfulness_member), str(cfg.safety_member)
        self.cost, self.budget = str(cfg.cost_member), float(cfg.cost_budget)
        self.threshold, self.scale = float(cfg.safety_threshold), str(cfg.member_scale)
        self.multiplier, self.lambda_lr = float(cfg.lambda_init), float(cfg.lambda_lr)
        self.lambda_update = bool(cfg.lambda_update)
        self.is_safety = is_safety
        mode = str(cfg.normalise)
        self.normalisers = {name: C.Normaliser(mode) for name in self.members}  # weighted: one per member
        self.whiten = C.Normaliser(mode)  # llama2
        self._scores: dict[str, list[float]] = {}
        self._metrics: dict[str, float] = {}

    @classmethod
    def from_config(cls, cfg: CompositeConfig, ctx: Any = None) -> CompositeScorer:
        """factory(options, ctx): ``cfg`` is the validated ``CompositeConfig``, ``ctx`` the StageContext."""
        members_node = cfg.members or {}
        if not members_node:
            raise ConfigError("preference_model=composite needs members: e.g. "
                              "'+preference_model.members.helpful={name: rule, fn: package.module:function}' "
                              "(see conf/preference_model/composite.yaml)")
        if ctx is None or not hasattr(ctx, "preference_model"):
            raise ConfigError("preference_model=composite builds its members through the stage context; "
                              "call it as ctx.preference_model() from a stage")
        check(cfg, list(members_node))
        members = {}
        for name, node in members_node.items():
            if not isinstance(node, Mapping) or not node.get("name"):
                raise ConfigError(f"preference_model.members.{name} must be a preference model node with a "
                                  f"name, e.g. {{name: rule, fn: package.module:function}}; got {node!r}")
            try:
                members[str(name)] = ctx.preference_model(node)
            except ConfigError as exc:
                raise ConfigError(f"preference_model.members.{name}: {exc}") from exc
        spec = cfg.safety_prompt
        is_safety = load_callable(str(spec), what="preference_model.safety_prompt") if spec else None
        return cls(members, cfg, is_safety)

    # ---------------------------------------------------------------------------------
    def score(self, prompts: Sequence[Any], responses: Sequence[str]) -> torch.Tensor:
        if len(prompts) != len(responses):
            raise ValueError(f"composite: {len(prompts)} prompts but {len(responses)} responses")
        scores = {name: self._member_scores(name, model, prompts, responses) for name, model in self.members.items()}
        metrics = {f"members/{name}_mean": _mean(values) for name, values in scores.items()}
        if self.combiner == "weighted":
            combined = C.weighted({n: self.normalisers[n](s) for n, s in scores.items()}, self.weights)
        elif self.combiner == "llama2":
            flags = torch.tensor([self._flagged(p) for p in prompts], dtype=torch.bool)
            chosen, used = C.llama2_select(scores[self.helpfulness], scores[self.safety], flags, self.threshold,
                                           self.scale)
            combined = self.whiten(chosen)
            metrics["safety_selected_fraction"] = _mean(used.float())
        else:
            cost = scores[self.cost]
            used = self.multiplier
            combined = C.constrained(scores[self.helpfulness], cost, used)
            mean_cost = _mean(cost)
            metrics.update({"lambda": used, "cost_mean": mean_cost, "cost_over_budget": mean_cost - self.budget})
            if self.lambda_update and len(responses):
                self.multiplier = C.update_multiplier(used, mean_cost, self.budget, self.lambda_lr)
        metrics["combined_mean"] = _mean(combined)
        self._scores = {name: [float(v) for v in values] for name, values in scores.items()}
        self._scores["combined"] = [float(v) for v in combined]
        self._metrics = metrics
        return combined.float()

    def last_metrics(self) -> dict[str, float]:
        """The last ``score`` call's member means, combined mean and (constrained) the lambda it used."""
        return dict(self._metrics)

    def last_scores(self) -> dict[str, list[float]]:
        """The last ``score`` call's per-response scores of each member and ``combined``."""
        return {name: list(values) for name, values in self._scores.items()}

    def _flagged(self, prompt: Any) -> bool:
        """IS_SAFETY(prompt) of the llama2 rule: ``safety_prompt``, or False when none is set."""
        if self.is_safety is None:
            return False
        try:
            return bool(self.is_safety(prompt))
        except Exception as exc:
            raise ConfigError(f"preference_model.safety_prompt raised {type(exc).__name__}: {exc} "
                              f"(prompt={str(prompt)[:120]!r})") from exc

    @staticmethod
    def _member_scores(name: str, model: Any, prompts: Sequence[Any], responses: Sequence[str]) -> torch.Tensor:
        values = torch.as_tensor(model.score(list(prompts), list(responses)), dtype=torch.float32)
        values = values.detach().cpu().reshape(-1)
        if values.numel() != len(responses):
            raise ConfigError(f"composite member '{name}' returned {values.numel()} scores for "
                              f"{len(responses)} responses")
        if not torch.isfinite(values).all():
            bad = int((~torch.isfinite(values)).nonzero()[0])
            raise ConfigError(f"composite member '{name}' scored a response {float(values[bad])} "
                              f"(response={str(responses[bad])[:120]!r})")
        return values


def check(cfg: Any, names: Sequence[str]) -> None:
    """Reject a combiner that names a member the composite does not have, and bad numbers."""
    combiner = str(cfg.combiner)
    if combiner not in COMBINERS:
        raise ConfigError(f"preference_model.combiner must be one of {', '.join(COMBINERS)}, not {combiner!r}")
    if str(cfg.normalise) not in C.NORMALISERS:
        raise ConfigError(f"preference_model.normalise must be one of {', '.join(C.NORMALISERS)}, "
                          f"not {cfg.normalise!r}")
    needed: dict[str, str] = {}
    if combiner == "weighted":
        unknown = sorted(set(map(str, dict(cfg.weights or {}))) - set(names))
        if unknown:
            raise ConfigError(f"preference_model.weights names {', '.join(unknown)}, which are not members "
                              f"(members: {', '.join(names)})")
    elif combiner == "llama2":
        needed = {"helpfulness_member": str(cfg.helpfulness_member), "safety_member": str(cfg.safety_member)}
        if str(cfg.member_scale) not in C.MEMBER_SCALES:
            raise ConfigError(f"preference_model.member_scale must be one of {', '.join(C.MEMBER_SCALES)}, "
                              f"not {cfg.member_scale!r}")
        if not 0.0 < float(cfg.safety_threshold) < 1.0:
            raise ConfigError(f"preference_model.safety_threshold is a probability in (0, 1), "
                              f"not {cfg.safety_threshold}")
    else:
        needed = {"helpfulness_member": str(cfg.helpfulness_member), "cost_member": str(cfg.cost_member)}
        for key in ("lambda_init", "lambda_lr"):
            value = float(getattr(cfg, key))
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"preference_model.{key} must be a finite number >= 0, not {value}")
    for key, member in needed.items():
        if member not in names:
            raise ConfigError(f"combiner={combiner} uses preference_model.{key}={member!r}, which is not a member "
                              f"(members: {', '.join(names)}); set preference_model.{key}=<member>")


def _mean(values: torch.Tensor) -> float:
    return float(values.float().mean()) if values.numel() else 0.0
