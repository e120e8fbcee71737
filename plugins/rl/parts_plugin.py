"""Built-in plugin: on-policy RL's advantage estimators and policy losses, registered by name like
a third party's (``optimizer.advantage=<name>``, ``optimizer.policy_loss=<name>``)."""

from alignkit.core import AdvantageEstimatorEntry, PolicyLossEntry, hookimpl

ESTIMATORS = {  # name: (function in advantages.py, needs a critic, description)
    "gae": ("gae", True, "PPO: GAE on per-token rewards (KL penalty, score at the end) against a critic, "
                         "whitened over the batch."),
    "rloo": ("rloo", False, "RLOO: the score minus the mean of the prompt's other samples."),
    "grpo": ("grpo", False, "GRPO: the score minus the group's mean, over its std."),
    "dr_grpo": ("dr_grpo", False, "Dr. GRPO: the score minus the group's mean, not scaled by its std."),
    "reinforce_pp": ("reinforce_pp", False, "REINFORCE++: returns-to-go of KL-penalised rewards, whitened over "
                                            "the batch; no critic, no group baseline."),
    "best_vs_worst": ("best_vs_worst", False, "Online DPO: each group's best response +1, its worst -1."),
}

LOSSES = {  # name: (function in policy_losses.py, over pairs of rows, description)
    "ppo_clip": ("ppo_clip", False, "PPO's clipped surrogate per token (clip_low / clip_high: DAPO's "
                                    "clip-higher), optionally with the KL in the loss."),
    "gspo": ("gspo", False, "GSPO: the clipped surrogate with one importance ratio per response."),
    "reinforce": ("reinforce", False, "REINFORCE: -advantage x log-prob, no ratio, no clipping."),
    "dpo_pairwise": ("dpo_pairwise", True, "Online DPO: the DPO family's loss on (chosen, rejected) pairs of rows."),
}


@hookimpl
def alignkit_advantage_estimators():
    from alignkit.plugins.rl import advantages

    for name, (function, needs_critic, description) in ESTIMATORS.items():
        yield AdvantageEstimatorEntry(name=name, estimate=getattr(advantages, function), needs_critic=needs_critic,
                                      description=description)


@hookimpl
def alignkit_policy_losses():
    from alignkit.plugins.rl import policy_losses

    for name, (function, pairwise, description) in LOSSES.items():
        yield PolicyLossEntry(name=name, loss=getattr(policy_losses, function), pairwise=pairwise,
                              description=description)
