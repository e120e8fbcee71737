"""Which log records reach the console: Accelerate logs every file of every checkpoint save at
INFO ("Saving current state to ...", "Model weights saved in ...") and warns about the tied
embeddings it drops on each save ("Removed shared tensor ..."); a run saving often would bury
its progress bar under them. They still go to the run's log file (Hydra's ``<job>.log``)."""

from __future__ import annotations

import logging

FILE_ONLY_BELOW_WARNING = ("accelerate.accelerator", "accelerate.checkpointing")
FILE_ONLY_MESSAGES = {"accelerate.utils.other": "Removed shared tensor"}  # logger: message prefix


class FileOnly(logging.Filter):
    """Drops Accelerate's checkpoint chatter from the handler it is added to."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name in FILE_ONLY_BELOW_WARNING and record.levelno < logging.WARNING:
            return False
        prefix = FILE_ONLY_MESSAGES.get(record.name)
        return prefix is None or not record.getMessage().startswith(prefix)


def keep_checkpoint_logs_off_console(logger: logging.Logger | None = None) -> None:
    """Add ``FileOnly`` to the console handlers of ``logger`` (the root: where Hydra's job logging
    puts its console and file handlers). File handlers, and handlers of other classes (pytest's
    capture), are left as they are; calling it again adds nothing."""
    for handler in (logger or logging.getLogger()).handlers:
        if type(handler) is logging.StreamHandler and not any(isinstance(f, FileOnly) for f in handler.filters):
            handler.addFilter(FileOnly())
