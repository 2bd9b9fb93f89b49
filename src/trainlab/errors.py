"""Errors a user can fix: the CLI prints them as one line and exits with code 2.

Anything else that escapes is a bug in trainlab and keeps its traceback.
"""

from __future__ import annotations


class TrainlabError(Exception):
    """Base class for every error caused by the user's input (recipe, data, command line)."""

    exit_code = 2
    prefix = "error"  # the CLI prints "trainlab: <prefix>: <message>"


class RecipeError(TrainlabError):
    """A recipe key is unknown, has the wrong type, or an impossible value."""


class DataError(TrainlabError):
    """A dataset cannot be read or holds invalid values (names the file and row)."""


class RunFolderError(TrainlabError):
    """A run folder would be overwritten, or is missing what a command needs."""


class NonFiniteError(TrainlabError):
    """The loss or the gradients became NaN/inf: training stopped before applying the update."""

    exit_code = 3

    def __init__(self, message: str, position: tuple[int, int] | None = None) -> None:
        super().__init__(message)
        self.position = position  # (epoch, batch) of the offending batch, when known


class CheckpointError(TrainlabError):
    """A checkpoint could not be written (the previous one is intact) or is damaged."""

    exit_code = 1


class TrainlabWarning(UserWarning):
    """Something the user should know that did not stop the run (printed as one line)."""
