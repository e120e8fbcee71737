"""Built-in plugin: the policy-gradient optimizers ``ppo`` (with a critic) and ``rloo`` and
``grpo`` (critic-free) and ``online_dpo``, all against any preference model and sharing one
rollout loop."""

from alignkit.core import OptimizerEntry, hookimpl


@hookimpl
def alignkit_optimizers():
    from alignkit.plugins.ppo.critic_free import GRPOConfig, GRPOOptimizer, RLOOConfig, RLOOOptimizer
    from alignkit.plugins.ppo.online_dpo import OnlineDPOConfig, OnlineDPOOptimizer
    from alignkit.plugins.ppo.ppo import PPOConfig, PPOOptimizer

    yield OptimizerEntry(
        name="ppo",
        factory=PPOOptimizer,
        config_schema=PPOConfig,
        description="PPO with a critic, GAE and a KL penalty to the frozen reference; rewards from any preference model.",
    )
    yield OptimizerEntry(
        name="rloo",
        factory=RLOOOptimizer,
        config_schema=RLOOConfig,
        description="RLOO: k samples per prompt, leave-one-out baselines, KL in the reward; no value model.",
    )
    yield OptimizerEntry(
        name="grpo",
        factory=GRPOOptimizer,
        config_schema=GRPOConfig,
        description="GRPO: k samples per prompt, group-normalised advantages, k3 KL in the loss; no value model.",
    )
    yield OptimizerEntry(
        name="online_dpo",
        factory=OnlineDPOOptimizer,
        config_schema=OnlineDPOConfig,
        description="Online DPO: k samples per prompt, best vs worst by the preference model, one DPO step each batch.",
    )
