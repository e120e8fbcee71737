"""Built-in plugin: metric sinks. ``metrics.jsonl`` is written by the run directory itself."""

from alignkit.core import LoggerEntry, hookimpl
from alignkit.plugins.loggers.console import ConsoleConfig, ConsoleLogger
from alignkit.plugins.loggers.wandb_logger import WandbConfig, WandbLogger


@hookimpl
def alignkit_loggers():
    yield LoggerEntry(name="console", factory=ConsoleLogger, config_schema=ConsoleConfig,
                      description="Progress lines and a final table of every stage's metrics.")
    yield LoggerEntry(name="wandb", factory=WandbLogger, config_schema=WandbConfig,
                      description="Weights & Biases (offline by default; mode=online to sync).")
