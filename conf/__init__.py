"""Hydra configs shipped with alignkit (pkg://alignkit.conf)."""
