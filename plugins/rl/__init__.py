"""On-policy RL: one loop (rollouts, scores, advantages, policy loss, update) and its parts,
the advantage estimators and policy losses registered by name (core/rl.py is their contract)."""
