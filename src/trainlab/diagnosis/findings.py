"""What every check returns: a verdict, what was measured, what to do about it, and why.

Two fields let the doctor tell one story instead of a list of symptoms:

- ``cause`` names the root cause a check blames (one of :data:`CAUSES`, or empty when the
  finding stands on its own, like a class imbalance). Causes are ranked from upstream to
  downstream: a broken input pipeline makes every later check fail, a symmetric init makes the
  learning rate look wrong, not the other way round. The doctor reports the most upstream
  failing cause as the cause and marks the findings it explains (``diagnosis.story``).
- ``fix`` is the finding's remedy as recipe overrides (``optimizer.lr=0.0003``), which
  ``trainlab doctor --fix`` tries and a user can paste after ``trainlab train RECIPE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CAUSES",
    "CAUSE_TEXT",
    "DIRECT_CAUSES",
    "Finding",
    "Status",
    "cause_rank",
    "most_severe",
    "worst",
]

Status = Literal["ok", "warn", "fail"]
#: statuses by severity
STATUS_RANK = {"ok": 0, "warn": 1, "fail": 2}

#: root causes, upstream first: a cause explains the failures of the causes ranked below it
CAUSES: dict[str, int] = {
    "data.pipeline": 0,  # preprocessing/augmentation make inputs unlike the data (values in 100s)
    "data.labels": 0,  # labels misaligned with the inputs
    "data.scale": 0,  # inputs the model sees are not centred/scaled (preprocessing missing)
    "model.output": 1,  # the model outputs probabilities before a loss that expects logits
    "init.symmetric": 1,  # all-zero or constant weights: every unit of a layer is the same
    "init.scale": 2,  # the init is too small or too large for the activation (collapse/explode)
    "init.last_layer": 2,  # the last layer's bias or scale makes the initial loss far above ln C
    "units.dead": 3,  # dead ReLUs
    "units.saturated": 3,  # saturated sigmoid/tanh units
    "gradients": 4,  # vanishing or exploding gradients (saturated or dead units make them)
    "lr.high": 5,
    "lr.low": 5,
    "capacity": 6,  # the model is too small to fit the sample
    "regularization": 7,  # too little regularisation: the train/val (or test) gap grows
}


#: causes measured directly (the weights are all equal, the inputs reach hundreds, the model ends
#: in a softmax, permuted labels are learned as fast): never explained away by another finding.
#: The others are symptoms (a loss that does not fall, a ratio out of its band): several causes
#: produce them, so an upstream direct cause explains them.
DIRECT_CAUSES = frozenset(
    {
        "data.pipeline",
        "data.labels",
        "data.scale",
        "model.output",
        "init.symmetric",
        "init.last_layer",
    }
)

#: what each cause is, in words (the doctor's "follows from" line)
CAUSE_TEXT: dict[str, str] = {
    "data.pipeline": "the inputs training sees are broken by preprocessing/augmentation",
    "data.labels": "the labels do not match the inputs",
    "data.scale": "the inputs the model sees are not centred and scaled",
    "model.output": "the model outputs probabilities where the loss expects logits",
    "init.symmetric": "the init makes every unit of a layer the same (symmetric units)",
    "init.scale": "the init's scale does not fit the activation",
    "init.last_layer": "the last layer's init makes the initial loss far above ln C",
    "units.dead": "dead ReLU units",
    "units.saturated": "saturated sigmoid/tanh units",
    "gradients": "gradients vanish or explode",
    "lr.high": "the learning rate is too high",
    "lr.low": "the learning rate is too low",
    "capacity": "the model is too small",
    "regularization": "too little regularisation for the data",
}
assert set(CAUSE_TEXT) == set(CAUSES), "every cause needs its words"


def cause_rank(cause: str) -> int | None:
    """The rank of ``cause`` in :data:`CAUSES` (None for a finding that names no cause)."""
    return CAUSES.get(cause)


@dataclass(frozen=True)
class Finding:
    """One check's verdict.

    ``check`` is the registered check's name (``initial_loss``), or ``NAME.ASPECT`` for one of
    several findings of a check (``data.balance``). ``summary`` is one line saying what was
    measured against what was expected; ``advice`` says what to do (empty when ok); ``values``
    holds the measured numbers (JSON-able) so scripts and tests read them without parsing text;
    ``figures`` are PNG paths relative to the report folder; ``cause`` and ``fix``: see the
    module docstring.
    """

    check: str
    status: Status
    summary: str
    advice: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    figures: tuple[str, ...] = ()
    cause: str = ""
    fix: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.cause and self.cause not in CAUSES:
            raise ValueError(f"unknown cause {self.cause!r}; known: {', '.join(CAUSES)}")

    @property
    def name(self) -> str:
        """The registered check this finding comes from (``data`` for ``data.balance``)."""
        return self.check.split(".")[0]

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
            "cause": self.cause,
            "fix": list(self.fix),
            "values": self.values,
            "figures": list(self.figures),
        }


def most_severe(*statuses: Status) -> Status:
    """The most severe of ``statuses`` (ok when there are none)."""
    return max(statuses, key=STATUS_RANK.__getitem__, default="ok")


def worst(findings: list[Finding]) -> Status:
    """The most severe status among ``findings`` (ok when there are none)."""
    return most_severe(*(f.status for f in findings))
