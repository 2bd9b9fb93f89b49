"""Errors a user can fix: the CLI prints one line per problem and exits with code 2.

Anything else that escapes is a bug in trainlab and keeps its traceback.
"""

from __future__ import annotations


class TrainlabError(Exception):
    """Base class for every error caused by the user's input (recipe, data, command line)."""

    exit_code = 2
    prefix = "error"  # the CLI prints "trainlab: <prefix>: <message>"

    def lines(self) -> list[str]:
        """The message as the CLI prints it: one line each, every line readable on its own."""
        return [str(self)]


class RecipeError(TrainlabError):
    """A recipe key is unknown, has the wrong type, or an impossible value.

    ``problems`` lists every problem found, one line each, naming the key
    (``model.activaton: unknown key; did you mean model.activation?``); ``source`` is the recipe
    they were found in. One problem reads ``SOURCE: PROBLEM`` as ever; several read
    ``SOURCE: N problems`` and then one indented line each, the first :attr:`shown` of them and
    a line counting the rest.
    """

    shown = 10  # problems printed; any more are counted in one line

    def __init__(
        self, message: str, problems: list[str] | None = None, source: str | None = None
    ) -> None:
        super().__init__(message)
        self.problems = list(problems) if problems else [message]
        self.source = source

    @classmethod
    def of(cls, source: str, problems: list[str]) -> RecipeError:
        """One error for every problem found in ``source`` (each one line, naming its key)."""
        if len(problems) == 1:
            return cls(f"{source}: {problems[0]}", problems, source)
        lines = [f"{source}: {len(problems)} problems", *(f"  {p}" for p in problems[: cls.shown])]
        if len(problems) > cls.shown:
            lines.append(f"  ... and {len(problems) - cls.shown} more")
        return cls("\n".join(lines), problems, source)

    def lines(self) -> list[str]:
        """One line per problem (the first :attr:`shown`), each prefixed by the source."""
        if len(self.problems) == 1:
            return [str(self)]
        where = f"{self.source}: " if self.source else ""
        lines = [where + p for p in self.problems[: self.shown]]
        if len(self.problems) > self.shown:
            more = len(self.problems) - self.shown
            lines.append(f"{where}... and {more} more ({len(self.problems)} problems in all)")
        return lines


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


class StorageError(TrainlabError):
    """A file of the run could not be written (disk full, quota, permissions); whatever was
    half-written has been removed and the previous file or checkpoint is intact."""

    exit_code = 1

    def __init__(self, message: str, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full


class TrainlabWarning(UserWarning):
    """Something the user should know that did not stop the run (printed as one line)."""
