"""The errors the command line reports as one line on stderr, without a traceback."""

from __future__ import annotations

__all__ = ["CliError", "MissingDependencyError", "missing_dependency"]


class CliError(Exception):
    """A problem with the user's input (a file, an argument, a model): reported, exit status 2."""

    exit_status = 2


class MissingDependencyError(CliError):
    """An optional package that the requested work needs is not installed: exit status 3."""

    exit_status = 3


def missing_dependency(error: ImportError, needed_for: str, extra: str) -> MissingDependencyError:
    """Returns the one-line error for an optional import that failed.

    Args:
      error: the ``ImportError`` raised by the import.
      needed_for: what needs the package, e.g. ``"the default model"``.
      extra: the extra that installs it, e.g. ``"demo"``.
    """
    module = getattr(error, "name", None) or str(error)
    return MissingDependencyError(
        f"{needed_for} needs the package {module!r}, which is not installed: "
        f"pip install 'saliencykit[{extra}]'"
    )
