"""alignkit-kto: the ``kto`` optimizer and the ``keyword`` feedback provider, as a third-party plugin."""

__version__ = "0.1.0"
