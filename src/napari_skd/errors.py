"""Project exceptions. Messages are written for the user: what was wrong, what was expected, what to do."""


class SkdError(Exception):
    """Base class of every error napari-skd raises on purpose."""


class InputError(SkdError):
    """Bad input or configuration from the user (CLI exit code 2)."""


class ConfigError(InputError):
    """A configuration value is invalid."""


class CheckpointError(InputError):
    """A checkpoint file is missing, damaged, unsafe or of an unknown format."""
