"""What every check returns: a verdict, what was measured, what to do about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Finding", "Status", "most_severe", "worst"]

Status = Literal["ok", "warn", "fail"]
_RANK = {"ok": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class Finding:
    """One check's verdict.

    ``summary`` is one line saying what was measured against what was expected; ``advice`` says
    what to do (empty when ok); ``values`` holds the measured numbers (JSON-able) so scripts and
    tests read them without parsing text; ``figures`` are PNG paths relative to the report folder.
    """

    check: str
    status: Status
    summary: str
    advice: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    figures: tuple[str, ...] = ()

    def line(self) -> str:
        """The one line ``trainlab doctor`` prints for this finding."""
        tail = f" -> {self.advice}" if self.advice else ""
        return f"{self.status:<4} {self.check}: {self.summary}{tail}"

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "status": self.status,
            "summary": self.summary,
            "advice": self.advice,
            "values": self.values,
            "figures": list(self.figures),
        }


def most_severe(*statuses: Status) -> Status:
    """The most severe of ``statuses`` (ok when there are none)."""
    return max(statuses, key=_RANK.__getitem__, default="ok")


def worst(findings: list[Finding]) -> Status:
    """The most severe status among ``findings`` (ok when there are none)."""
    return most_severe(*(f.status for f in findings))
