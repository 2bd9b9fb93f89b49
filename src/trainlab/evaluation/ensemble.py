"""Model ensembles (lecture 002: "train multiple independent models; at test time average their
results; enjoy 2% extra performance") and snapshot ensembles (Huang et al. 2017: the end of each
SGDR cycle of one run, see :mod:`trainlab.engine.snapshots`).

Written by hand (the lectures name probability-averaging ensembles among what no library has):
each member's test-split class probabilities are averaged (``average="logits"`` averages the
raw scores instead and takes their softmax), and every member and the ensemble get accuracy,
NLL, ECE and Brier score, so the gain is read off beside the members it came from. Members must
share the dataset and its split (the same test examples in the same order); the test split is
read once, from the first member's recipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainlab.engine.calibration import calibration_metrics, probabilities
from trainlab.errors import RunFolderError
from trainlab.evaluation.predictor import Predictor, load_run

__all__ = ["ensemble", "member_predictors", "AVERAGES"]

AVERAGES = ("probabilities", "logits")


@dataclass(frozen=True)
class Member:
    """One member: a name for the report and the model that predicts."""

    name: str
    predictor: Predictor


def member_predictors(
    runs: Sequence[str | Path], snapshots: bool = False, weights: str = "final"
) -> list[Member]:
    """The members of an ensemble: each run's model, or (``snapshots``) the snapshots of one
    run, in cycle order."""
    if not runs:
        raise RunFolderError("ensemble: give at least one run folder")
    if snapshots:
        if len(runs) != 1:
            raise RunFolderError(
                f"ensemble --snapshots takes one run folder (its SGDR cycles are the members); "
                f"got {len(runs)}"
            )
        if weights != "final":
            raise RunFolderError(
                f"ensemble --snapshots --weights {weights}: the members are the cycles' own "
                "weights; leave out --weights"
            )
        return _snapshot_members(Path(runs[0]))
    members = [Member(str(run), load_run(run, weights)) for run in runs]
    _check_same_data(members)
    return members


def _snapshot_members(run: Path) -> list[Member]:
    from trainlab.engine.checkpoint import apply_run_weights, load_weights
    from trainlab.engine.snapshots import SNAPSHOT_DIR, snapshot_files

    files = snapshot_files(run)
    if not files:
        raise RunFolderError(
            f"{run}: no snapshots in {run / SNAPSHOT_DIR} (train with schedule.name=sgdr and "
            "training.snapshots=true to keep the weights at the end of each cycle)"
        )
    members = []
    shell = "final" if (run / "model.safetensors").is_file() else "last"  # a run not finished
    for path in files:
        predictor = load_run(run, shell)  # the model and preprocessing; the weights are replaced
        apply_run_weights(predictor.model, predictor.preprocess, load_weights(path))
        predictor.preprocess.to(predictor.device)
        members.append(Member(f"{run}/{SNAPSHOT_DIR}/{path.name}", predictor))
    return members


def _check_same_data(members: list[Member]) -> None:
    """Every member must have been trained and tested on the first one's dataset and split,
    over the same classes."""
    from trainlab.engine.run_folder import split_differences

    first = members[0]
    for member in members[1:]:
        differ = split_differences(first.predictor.recipe, member.predictor.recipe)
        if member.predictor.classes != first.predictor.classes:
            differ.append(("classes", first.predictor.classes, member.predictor.classes))
        if differ:
            key, want, got = differ[0]
            raise RunFolderError(
                f"ensemble: {member.name} was trained on other data than {first.name} "
                f"(data.{key}: {got!r} vs {want!r}); members must share the dataset and its split"
            )


def _check_same_outputs(members: list[Member]) -> None:
    """Logits average only over models with the same outputs (a single binary logit beside two
    class scores would broadcast into a wrong average)."""
    first = members[0]
    for member in members[1:]:
        if member.predictor.card.num_outputs != first.predictor.card.num_outputs:
            raise RunFolderError(
                f"ensemble --logits: {member.name} has {member.predictor.card.num_outputs} "
                f"outputs, {first.name} {first.predictor.card.num_outputs} (loss "
                f"{member.predictor.recipe.loss.name} vs {first.predictor.recipe.loss.name}); "
                "average probabilities instead (leave out --logits)"
            )


def ensemble(
    runs: Sequence[str | Path],
    *,
    average: str = "probabilities",
    snapshots: bool = False,
    weights: str = "final",
    tta: str | None = None,
) -> dict[str, Any]:
    """Each member's and the ensemble's test accuracy, NLL, ECE and Brier score.

    ``tta``: each member's probabilities are first averaged over that test-time augmentation
    policy (:mod:`trainlab.evaluation.tta`). ``growth``: the ensemble's accuracy with the first
    1, 2, ... members (how much each added member still gains)."""
    from trainlab.data.datasets import load_splits

    if average not in AVERAGES:
        raise RunFolderError(f"ensemble: average={average!r}; expected one of {AVERAGES}")
    if tta is not None and average == "logits":
        raise RunFolderError("ensemble: --tta averages probabilities; leave out --logits")
    if tta is not None and "," in tta:
        raise RunFolderError(f"ensemble --tta {tta}: one policy (each member averages over it)")
    members = member_predictors(runs, snapshots, weights)
    if average == "logits":
        _check_same_outputs(members)
    splits = load_splits(members[0].predictor.recipe.data)
    y = torch.as_tensor(splits.y_test, dtype=torch.long)
    outputs = [_member_outputs(m.predictor, splits, average, tta) for m in members]
    from_probs = average == "probabilities"
    rows = [
        {"member": m.name, **_figures(probabilities(out) if not from_probs else out, y)}
        for m, out in zip(members, outputs, strict=True)
    ]
    growth, running = [], torch.zeros_like(outputs[0])
    for k, out in enumerate(outputs, start=1):
        running += out
        growth.append(_figures(_combined(running / k, from_probs), y)["test_acc"])
    combined = _figures(_combined(running / len(outputs), from_probs), y)
    mean_member = sum(r["test_acc"] for r in rows) / len(rows)
    return {
        "members": rows,
        "ensemble": combined,
        "n": len(rows),
        "average": average,
        "tta": tta,
        "snapshots": snapshots,
        "gain_over_mean_member": combined["test_acc"] - mean_member,
        "gain_over_best_member": combined["test_acc"] - max(r["test_acc"] for r in rows),
        "growth": growth,
        "test_examples": len(y),
    }


def _member_outputs(predictor: Predictor, splits: Any, average: str, tta: str | None):
    """A member's test-split probabilities (or raw scores, for ``logits``)."""
    if tta is not None:
        from trainlab.evaluation.tta import averaged_probabilities

        return averaged_probabilities(predictor, splits.x_test, tta).probs
    from trainlab.evaluation.scores import split_scores

    scores, _ = split_scores(predictor, splits.x_test, splits.y_test)
    return scores if average == "logits" else probabilities(scores)


def _combined(mean: torch.Tensor, from_probs: bool) -> torch.Tensor:
    """Probabilities of the averaged outputs: the mean itself, or the mean logits' softmax."""
    return mean if from_probs else probabilities(mean)


def _figures(probs: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Accuracy, NLL, ECE and Brier score of class probabilities."""
    acc = float((probs.argmax(1) == y).double().mean()) if len(y) else 0.0
    return {"test_acc": acc, **calibration_metrics(probs, y, "test", from_probs=True)}
