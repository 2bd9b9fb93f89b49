"""Knowledge distillation: the loss against torch's KL and the formula, the recipe section, the
teacher run folders (one or an ensemble) and a real distilled run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from trainlab.data.preprocess import create_preprocessor
from trainlab.engine.build import build
from trainlab.engine.distill import undo_preprocess
from trainlab.engine.step import Step
from trainlab.errors import RecipeError
from trainlab.nn.distill import distill_loss, soft_targets
from trainlab.nn.losses import LOSSES
from trainlab.recipe import load_recipe
from trainlab.runs import train

# a tiny MLP on digits: two epochs in well under a second
MLP = [
    "augment=[]",
    "model.name=mlp",
    "model.widths=[32]",
    "model.norm=none",
    "schedule.name=constant",
    "schedule.warmup_epochs=0",
    "training.epochs=2",
    "training.progress=false",
    "training.precision=fp32",
    "training.device=cpu",
]
STUDENT = [*MLP, "model.widths=[8]"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "run"
    train(None, [*MLP, "training.epochs=3"], out=out, quiet=True)
    return out


def _hand(s, y, t, T, alpha, smoothing=0.0):
    """The formula written out: (1-a) CE + a T^2 sum_c p_c (log p_c - log q_c), batch mean."""
    p = torch.softmax(t / T, 1)
    log_q = torch.log_softmax(s / T, 1)
    kl = (p * (p.log() - log_q)).sum(1).mean()
    return (1 - alpha) * F.cross_entropy(s, y, label_smoothing=smoothing) + alpha * T * T * kl


@pytest.mark.parametrize(("T", "alpha"), [(1.0, 0.5), (4.0, 0.9), (2.5, 1.0), (3.0, 0.0)])
def test_the_loss_is_the_formula_and_torch_kl_values_and_gradients(T: float, alpha: float):
    gen = torch.Generator().manual_seed(0)
    s0, t = torch.randn(16, 5, generator=gen) * 3, torch.randn(16, 5, generator=gen) * 3
    y = torch.randint(0, 5, (16,), generator=gen)
    ce = LOSSES.build("cross_entropy", label_smoothing=0.1)

    def grad_of(fn):
        s = s0.clone().requires_grad_(True)
        value = fn(s)
        value.backward()
        return value.detach(), s.grad

    ours, g_ours = grad_of(lambda s: distill_loss(s, y, soft_targets([t], T), ce, T, alpha))

    def torch_kl(s: torch.Tensor) -> torch.Tensor:
        p, log_q = F.softmax(t / T, 1), F.log_softmax(s / T, 1)
        kl = F.kl_div(log_q, p, reduction="batchmean")
        return (1 - alpha) * F.cross_entropy(s, y, label_smoothing=0.1) + alpha * T**2 * kl

    ref, g_ref = grad_of(torch_kl)
    hand, g_hand = grad_of(lambda s: _hand(s, y, t, T, alpha, 0.1))
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(ours, hand)
    torch.testing.assert_close(g_ours, g_ref)
    torch.testing.assert_close(g_ours, g_hand)


def test_an_ensemble_averages_softened_probabilities_not_logits():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 3, generator=gen) * 4, torch.randn(4, 3, generator=gen) * 4
    mean_p = (torch.softmax(a / 2, 1) + torch.softmax(b / 2, 1)) / 2
    torch.testing.assert_close(soft_targets([a, b], 2.0), mean_p)
    assert not torch.allclose(soft_targets([a, b], 2.0), torch.softmax((a + b) / 4, 1))


def test_soft_mixup_targets_keep_working():
    """The hard part is the recipe's loss, which takes mixup's (N, C) probabilities."""
    s, t = torch.randn(6, 4), torch.randn(6, 4)
    y = torch.softmax(torch.randn(6, 4), 1)
    ce = LOSSES.build("cross_entropy")
    got = distill_loss(s, y, soft_targets([t], 2.0), ce, 2.0, 0.3)
    want = 0.7 * F.cross_entropy(s, y) + 0.3 * 4 * F.kl_div(
        F.log_softmax(s / 2, 1), F.softmax(t / 2, 1), reduction="batchmean"
    )
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("name", ["none", "standardize", "per_channel", "per_channel_mean", "zca"])
def test_undoing_preprocessing_gives_the_raw_inputs_back(name: str):
    raw = torch.rand(200, 3, 4) * 5 + 1
    pre = create_preprocessor(name, 1e-5).fit(raw)
    torch.testing.assert_close(undo_preprocess(pre)(pre(raw)), raw, atol=1e-3, rtol=1e-4)


def test_the_section_is_checked_and_recorded():
    recipe = load_recipe(None, ["distill.teacher=runs/t"])
    assert (recipe.distill.temperature, recipe.distill.alpha) == (4.0, 0.9)
    assert yaml.safe_load(recipe.to_yaml())["distill"]["teacher"] == "runs/t"
    assert load_recipe(None).distill is None
    with pytest.raises(RecipeError, match=r"distill\.temperature"):
        load_recipe(None, ["distill.teacher=runs/t", "distill.temperature=0"])
    with pytest.raises(RecipeError, match=r"distill\.alpha"):
        load_recipe(None, ["distill.teacher=runs/t", "distill.alpha=1.5"])
    with pytest.raises(RecipeError, match=r"distill\.teacher"):
        load_recipe(None, ["distill.teacher=[]"])


def test_a_missing_teacher_is_one_line_naming_the_key(tmp_path: Path):
    with pytest.raises(RecipeError, match=r"distill\.teacher=.*nowhere.*run folder") as info:
        build(load_recipe(None, [*STUDENT, f"distill.teacher={tmp_path / 'nowhere'}"]))
    assert "\n" not in str(info.value).strip()
    assert not (tmp_path / "nowhere").exists()


def test_a_teacher_of_other_data_is_refused(teacher: Path, tmp_path: Path, blobs_npz: Path):
    other = [*STUDENT, f"data={{name: npz, path: '{blobs_npz}'}}", f"distill.teacher={teacher}"]
    with pytest.raises(
        RecipeError,
        match=r"distill\.teacher=.*shape \(1, 8, 8\).*10 classes.*"
        r"expected.*shape \(4,\), 2 classes",
    ):
        train(None, other, out=tmp_path / "s", quiet=True)
    assert not (tmp_path / "s").exists()


def test_a_teacher_trained_on_another_split_is_refused(teacher: Path, tmp_path: Path):
    """Another split_seed: the teacher may have trained on the student's test examples."""
    other = [*STUDENT, "data.split_seed=7", f"distill.teacher={teacher}"]
    with pytest.raises(RecipeError, match=r"distill\.teacher=.*data\.split_seed=0.*has 7"):
        train(None, other, out=tmp_path / "s", quiet=True)
    assert not (tmp_path / "s").exists()


def _final_weights(recipe, steps: int = 12):
    parts = build(recipe)
    step = Step.of(parts)
    batches = parts.loader.epoch(0)
    for _ in range(steps):
        x, y = next(batches)
        step(x, y, parts.base_lr)
    return [p.detach().clone() for p in parts.model.parameters()], parts


def test_alpha_zero_is_plain_training_bit_for_bit(teacher: Path):
    plain, _ = _final_weights(load_recipe(None, STUDENT))
    zero, parts = _final_weights(
        load_recipe(None, [*STUDENT, f"distill.teacher={teacher}", "distill.alpha=0"])
    )
    assert parts.distill is not None
    assert all(torch.equal(a, b) for a, b in zip(plain, zero, strict=True))


def test_the_same_teacher_twice_is_that_teacher(teacher: Path):
    one, _ = _final_weights(load_recipe(None, [*STUDENT, f"distill.teacher={teacher}"]))
    two, parts = _final_weights(
        load_recipe(None, [*STUDENT, f"distill.teacher=[{teacher}, {teacher}]"])
    )
    assert len(parts.distill.teachers) == 2
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(one, two, strict=True))
    plain, _ = _final_weights(load_recipe(None, STUDENT))
    assert not all(torch.equal(a, b) for a, b in zip(plain, one, strict=True))


def test_a_teacher_with_other_statistics_sees_its_own_preprocessing(teacher: Path):
    """A student with another preprocessing: the teacher's input is still its own."""
    parts = build(
        load_recipe(None, [*STUDENT, "preprocess.name=standardize", f"distill.teacher={teacher}"])
    )
    (t,) = parts.distill.teachers
    assert t.reprocess is not None
    from trainlab.evaluation.predictor import load_run

    raw = torch.from_numpy(parts.splits.x_train[:32])
    want = load_run(teacher, device="cpu").scores(raw)
    torch.testing.assert_close(t(parts.preprocess(raw)), want, atol=1e-4, rtol=1e-4)
    same = build(load_recipe(None, [*STUDENT, f"distill.teacher={teacher}"]))
    assert same.distill.teachers[0].reprocess is None  # same data and split: no extra work


def test_a_distilled_student_trains_and_records_its_teacher(teacher: Path, tmp_path: Path):
    out = tmp_path / "student"
    longer = [*STUDENT, "training.epochs=6", f"distill.teacher={teacher}"]
    result = train(None, longer, out=out, quiet=True)  # alone, this student reaches about 0.7
    summary = json.loads((out / "summary.json").read_text())
    assert summary and result.val["val_acc"] > 0.6
    saved = yaml.safe_load((out / "recipe.yaml").read_text())
    assert saved["distill"] == {
        "teacher": str(teacher),
        "temperature": 4.0,
        "alpha": 0.9,
        "weights": "final",
    }


def test_one_binary_logit_is_two_class_probabilities():
    z = torch.randn(5, 1)
    p = torch.sigmoid(z[:, 0] / 3.0)
    torch.testing.assert_close(soft_targets([z], 3.0), torch.stack([1 - p, p], 1))


def test_the_teacher_sees_the_students_mixed_batch(teacher: Path):
    mixed = [*STUDENT, "augment=[{name: mixup, alpha: 0.4}]", f"distill.teacher={teacher}"]
    parts = build(load_recipe(None, mixed))
    seen = []
    targets = parts.distill.targets
    parts.distill.targets = lambda x: seen.append(x) or targets(x)
    step = Step.of(parts)
    x, y = next(parts.loader.epoch(0))
    assert y.ndim == 2  # mixup's soft targets
    out = step(x, y, parts.base_lr)
    assert seen[0] is x and torch.isfinite(out.loss)


def test_evaluation_reports_the_plain_loss(teacher: Path, tmp_path: Path):
    from trainlab.evaluation.predictor import load_run

    recipe = [*STUDENT, f"distill.teacher={teacher}"]
    result = train(None, recipe, out=tmp_path / "s", quiet=True)
    splits = build(load_recipe(None, recipe)).splits
    metrics, _ = load_run(tmp_path / "s", device="cpu").evaluate(splits.x_test, splits.y_test)
    assert metrics["test_loss"] == pytest.approx(result.test["test_loss"], rel=1e-5)


def test_a_full_batch_optimiser_distils_too(teacher: Path):
    parts = build(
        load_recipe(
            None, [*STUDENT, "optimizer={name: lbfgs, lr: 1.0}", f"distill.teacher={teacher}"]
        )
    )
    x, y = parts.loader.full_batch()
    step = Step.of(parts)
    soft = parts.distill.targets(x)
    with torch.no_grad():
        before = step.data_loss(parts.model(x).float(), y, soft)
    out = step.take(x, y, 1.0)
    assert out.updated and torch.isfinite(out.loss) and out.loss < before
