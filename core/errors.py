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
