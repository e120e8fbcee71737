"""The critic (value model) of estimators that need one (``gae``): how it starts, how it learns.

``optimizer.critic=separate`` trains a second backbone with a value head, started from the
run's reward model when there is one (InstructGPT) or from the policy; ``critic=shared`` puts a
value head on the policy's own hidden states.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from alignkit.core.errors import ConfigError
from alignkit.core.pipeline import StageContext
from alignkit.core.rl import masked_mean
from alignkit.core.types import ModelSpec
from alignkit.plugins.rl.actor_critic import _base, critic_from_policy, critic_from_reward_model, value_head
from alignkit.plugins.rl.options import RLOptions

log = logging.getLogger("alignkit")


def build_critic(ctx: StageContext, o: RLOptions, policy: Any) -> dict[str, Any]:
    """``ActorCritic``'s critic arguments: a shared head or a separate ``ValueModel``."""
    base = _base(policy)
    if o.critic == "shared":
        return {"shared_head": value_head(base.config.hidden_size)}
    init = o.critic_init
    folder = ctx.find_artifact("reward_model")
    if init == "reward_model" and folder is None:
        raise ConfigError("optimizer.critic_init=reward_model needs an earlier stage that trains a reward model")
    if init in ("auto", "reward_model") and folder is not None:
        try:
            rm = ctx.load_model("reward", ModelSpec(str(folder))).model
        except Exception as exc:  # a reward model we cannot load as a transformers model
            if init == "reward_model":
                raise
            log.warning("ppo: cannot load the reward model at %s as a critic (%s); the critic starts from the "
                        "policy", folder, exc)
        else:
            same_vocab = getattr(rm.config, "vocab_size", None) == getattr(base.config, "vocab_size", None)
            if hasattr(rm, "base_model_prefix") and same_vocab:
                log.info("ppo: critic initialised from the reward model %s", folder)
                return {"critic": critic_from_reward_model(rm)}
            if init == "reward_model":
                raise ConfigError(f"the reward model at {folder} does not share the policy's vocabulary, so it "
                                  f"cannot initialise the critic; use optimizer.critic_init=policy")
            log.warning("ppo: the reward model does not share the policy's vocabulary; the critic starts "
                        "from the policy")
    return {"critic": critic_from_policy(policy)}


def parameter_groups(model: Any, o: RLOptions, learning_rate: float) -> list[dict[str, Any]]:
    """The policy's trainable parameters, and the critic's with ``value_learning_rate`` when there is one."""
    groups = [{"params": [p for p in model.policy.parameters() if p.requires_grad], "lr": learning_rate}]
    critic = model.critic if model.critic is not None else model.shared_head
    if critic is not None:
        groups.append({"params": [p for p in critic.parameters() if p.requires_grad],
                       "lr": o.value_learning_rate or learning_rate})
    return groups


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Bessel-corrected variance over masked positions (plain when there is only one)."""
    n = mask.sum()
    var = masked_mean((x - masked_mean(x, mask)) ** 2, mask)
    return var * n / (n - 1) if n > 1 else var


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float = 0.2) -> tuple[torch.Tensor, float]:
    """Clipped value loss: ``0.5 * mean(max((V - R)^2, (V_clip - R)^2))`` over response tokens,
    where ``V_clip = V_old + clip(V - V_old, -eps, eps)``. Returns (loss, clip fraction).

    ``cliprange_value <= 0`` turns clipping off (plain squared error).
    """
    mask = mask.to(values.dtype)
    returns, old_values = returns.detach(), old_values.detach()
    unclipped = (values - returns) ** 2
    if cliprange_value <= 0:
        return 0.5 * masked_mean(unclipped, mask), 0.0
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        fraction = float(masked_mean((clipped > unclipped).to(mask.dtype), mask))
    return loss, fraction


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(returns - values) / Var(returns) over response tokens: 1 is a perfect critic,
    0 no better than a constant, negative worse. NaN when the returns do not vary."""
    var_returns = masked_var(returns, mask)
    if float(var_returns) == 0.0:
        return math.nan
    return float(1.0 - masked_var(returns - values, mask) / var_returns)
