"""The DPO family's losses. They live in ``alignkit.core.preference_losses`` so online DPO's policy
loss (plugins/rl) shares them without importing this plugin; the names stay importable here."""

from alignkit.core.preference_losses import LOSS_TYPES, SOFT_LABEL_LOSS_TYPES, dpo_loss, implicit_reward_accuracy

__all__ = ["LOSS_TYPES", "SOFT_LABEL_LOSS_TYPES", "dpo_loss", "implicit_reward_accuracy"]
