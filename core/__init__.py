"""alignkit's core: the plugin contract, records, the stage runner and the run directory.

Plugins import only the names re-exported here (and the documented submodules);
the core holds the math and model code several plugins share (losses, RL contract,
sampling, embeddings), never a plugin's own algorithm.
"""

from alignkit.core.errors import AlignkitError, ConfigError, DataError, PluginError, WaitingForFeedback
from alignkit.core.hookspecs import hookimpl, hookspec
from alignkit.core.types import (
    AdvantageEstimatorEntry,
    CommandEntry,
    DataSourceEntry,
    FeedbackProviderEntry,
    GeneratorEntry,
    Judgement,
    check_batch,
    LoadedModel,
    LoggerEntry,
    ModelSpec,
    OptimizerEntry,
    PolicyLossEntry,
    PreferenceModelEntry,
    StageEntry,
    StageResult,
)

__version__ = "0.1.0"

__all__ = [
    "AdvantageEstimatorEntry",
    "AlignkitError",
    "CommandEntry",
    "ConfigError",
    "DataError",
    "DataSourceEntry",
    "FeedbackProviderEntry",
    "GeneratorEntry",
    "Judgement",
    "check_batch",
    "LoadedModel",
    "LoggerEntry",
    "ModelSpec",
    "OptimizerEntry",
    "PluginError",
    "PolicyLossEntry",
    "PreferenceModelEntry",
    "StageEntry",
    "StageResult",
    "WaitingForFeedback",
    "__version__",
    "hookimpl",
    "hookspec",
]
