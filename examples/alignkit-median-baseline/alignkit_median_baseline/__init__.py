"""alignkit-median-baseline: the ``median_baseline`` advantage estimator, as a third-party plugin."""

__version__ = "0.1.0"
