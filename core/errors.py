"""Errors that reach the user as one clear paragraph instead of a traceback."""


class AlignkitError(Exception):
    """Base class: the CLI prints these as a one-paragraph message and exits non-zero."""


class PluginError(AlignkitError):
    """A plugin failed to load, or two plugins registered the same component name."""


class ConfigError(AlignkitError):
    """The composed configuration names something unknown or holds an invalid value."""


class DataError(AlignkitError):
    """A data record is invalid. The message names the file, the line and the field."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f":{line}"
            if field is not None:
                where += f": field '{field}'"
            where += ": "
        super().__init__(where + message)
        self.path, self.line, self.field = path, line, field


class TrainingDiverged(AlignkitError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class CheckpointError(AlignkitError):
    """A mid-stage checkpoint cannot be used; the message names its folder and what to do."""


class WaitingForFeedback(AlignkitError):
    """A stage needs judgements that people have not given yet (``feedback=human``).

    Not a failure: the runner ends the run with status ``waiting`` (stages already done keep
    their DONE markers) and the CLI exits with ``EXIT_WAITING``; rerunning the same command
    in the same run directory resumes once the labels are in.
    """

    EXIT_WAITING = 75  # sysexits EX_TEMPFAIL: try again later

    def __init__(self, message: str, *, labelled: int = 0, total: int = 0, url: str | None = None) -> None:
        super().__init__(message)
        self.labelled, self.total, self.url = labelled, total, url
