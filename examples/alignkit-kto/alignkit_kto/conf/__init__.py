"""Hydra config groups this plugin adds to alignkit's (``optimizer/kto``, ``feedback/keyword``)."""
