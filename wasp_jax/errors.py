"""The project's exception and warning types, shared by every layer.

The command line turns a `UsageError` (and its subclasses) into a one-line message and exit
code 2; `ConfigError` and `TaskError` are `ValueError`s that the command line reports the
same way. Library code raises these; it never imports the command line.
"""


class UsageError(Exception):
    """Bad input from the user: reported as a one-line message with exit code 2."""


class DataError(UsageError):
    """A data file is unreadable or malformed; the message names the file, line and fix."""


class DataWarning(UserWarning):
    """Allowed but suspicious data (a class without private samples, few candidates)."""


class ConfigError(ValueError):
    """A config value is invalid, or a config key/file does not exist."""


class TaskError(ValueError):
    """A task spec is missing, malformed or inconsistent."""
