"""Built-in feedback providers (rule, reward_model, dataset, constitution), the ``label`` and
``critique_revise`` stages, the judgement cache and labeler calibration."""
