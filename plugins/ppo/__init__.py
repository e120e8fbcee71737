"""PPO: reinforcement learning from a reward (a reward model or a rule) with a KL penalty."""
