"""The recipe schema: defaults, overrides, and one-line errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli
from trainlab.data.augment import AUGMENTS
from trainlab.errors import RecipeError
from trainlab.recipe import (
    DEFAULT_RECIPE,
    Recipe,
    apply_overrides,
    load_recipe,
    shipped_recipes,
    validate,
)


def test_default_recipe_loads_and_fills_every_default():
    recipe = load_recipe()
    assert recipe.data.name == "digits"
    dumped = recipe.model_dump(mode="json")
    assert dumped["optimizer"]["beta2"] == 0.999  # a factory default, written out
    assert dumped["schedule"]["final_lr"] == 0.0
    assert dumped["model"]["activation"] == {"name": "relu"}


def test_resolved_recipe_round_trips(tmp_path: Path):
    recipe = load_recipe(None, ["model.activation={name: leaky_relu, alpha: 0.1}", "seed=3"])
    path = tmp_path / "r.yaml"
    path.write_text(recipe.to_yaml())
    again = load_recipe(path)
    assert again == recipe
    assert again.model.activation.params() == {"alpha": 0.1}


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model.activaton=relu", "model.activaton: unknown key; did you mean model.activation?"),
        ("trainng.epochs=3", "trainng: unknown key; did you mean training?"),
        ("optimizer.lr=-1", "optimizer.lr: Input should be greater than 0"),
        ("optimizer.lr=.nan", "optimizer.lr"),
        ("model.dropout=1.0", "model.dropout: Input should be less than 1"),
        ("model.dropout=-0.1", "model.dropout"),
        ("training.batch_size=0", "training.batch_size: Input should be greater than 0"),
        ("training.epochs=abc", "training.epochs: Input should be a valid integer"),
        ("schedule.warmup_epochs=50", "schedule.warmup_epochs=50 is not shorter than"),
        ("model.activation=relux", "unknown activation 'relux'; did you mean 'relu'?"),
        ("optimizer.name=sgd", ""),  # valid
        ("optimizer.rho=0.9", "optimizer.rho: optimizer 'adamw' has no parameter 'rho'"),
        ("model.activation.alpah=3", "model.activation.alpah"),
        ("data.name=digitz", "did you mean 'digits'?"),
        ("loss.label_smoothing=0.1", ""),
        ("model.widths=[0]", "model.widths"),
        ("schedule={name: step, gamma: abc}", "schedule.gamma: schedule 'step' parameter"),
        ("optimizer.beta1=2", "optimizer.beta1: optimizer 'adamw' parameter 'beta1'"),
        ("loss.label_smoothing=1.5", "loss.label_smoothing"),
        ("schedule={name: sgdr, period_mult: 0}", "schedule.period_mult"),
        ("augment=[{name: hflip, p: 3}]", "augment.0.p"),
        ("model.init={name: kaiming_normal, mode: fan_avg}", "'fan_in' or 'fan_out'"),
        ("optimizer.lr_scaling=linear", "needs optimizer.base_batch_size"),
        ("preprocess=zca", "preprocess.name=zca with augment[0] random_crop: per-position"),
        ("preprocess=zero_center", ""),  # mean-only: moved values stay in the raw range
        ("seed=-1", "seed"),
    ],
)
def test_bad_values_are_refused_with_the_key(override: str, expected: str):
    if not expected:
        load_recipe(None, [override])
        return
    with pytest.raises(RecipeError) as info:
        load_recipe(None, [override])
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert message.startswith(str(DEFAULT_RECIPE))


def test_overrides_parse_yaml_values():
    raw = apply_overrides({}, ["a.b=0.5", "a.c=[1, 2]", "d=true", "e=text"])
    assert raw == {"a": {"b": 0.5, "c": [1, 2]}, "d": True, "e": "text"}
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        apply_overrides({}, ["=3"])


def test_shorthand_becomes_mapping_when_overriding_a_param():
    recipe = load_recipe(None, ["model.activation=leaky_relu", "model.activation.alpha=0.2"])
    assert recipe.model.activation.name == "leaky_relu"
    assert recipe.model.activation.params() == {"alpha": 0.2}


def test_yaml_python_tags_are_refused(tmp_path: Path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(RecipeError, match="invalid YAML"):
        load_recipe(path)
    assert not (tmp_path / "pwned").exists()


def test_recipe_must_be_a_mapping(tmp_path: Path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(RecipeError, match="must be a mapping"):
        load_recipe(path)


def test_every_shipped_recipe_is_valid():
    names = shipped_recipes()
    assert names and not any(n.endswith("_space") for n in names)  # spaces are not recipes
    for name in names:
        path = DEFAULT_RECIPE.parent / f"{name}.yaml"
        raw = yaml.safe_load(path.read_text())
        assert isinstance(validate(raw, str(path)), Recipe)


def test_missing_file_is_a_recipe_error(tmp_path: Path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_early_stopping_needs_a_validation_split():
    with pytest.raises(RecipeError, match="needs a validation split"):
        load_recipe(None, ["training.early_stopping={patience: 2}", "data.val_fraction=0"])


def test_every_mistake_is_reported_at_once_one_line_each():
    overrides = ["model.activaton=relu", "optimizer.lr=-1", "training.epochs=abc"]
    with pytest.raises(RecipeError) as info:
        load_recipe(None, overrides)
    error = info.value
    assert error.problems == [
        "model.activaton: unknown key; did you mean model.activation?",
        "optimizer.lr: Input should be greater than 0 (got -1)",
        "training.epochs: Input should be a valid integer, unable to parse string as an integer "
        "(got 'abc')",
    ]
    lines = str(error).splitlines()
    assert lines[0] == f"{DEFAULT_RECIPE}: 3 problems"
    assert lines[1:] == [f"  {p}" for p in error.problems]
    assert error.lines() == [f"{DEFAULT_RECIPE}: {p}" for p in error.problems]


def test_more_than_ten_mistakes_show_ten_and_count_the_rest(tmp_path: Path):
    path = tmp_path / "many.yaml"
    path.write_text("".join(f"typo{i}: 1\n" for i in range(12)))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    error = info.value
    assert len(error.problems) == 12
    lines = str(error).splitlines()
    assert lines[0] == f"{path}: 12 problems"
    assert len(lines) == 1 + 10 + 1
    assert [line.split(":")[0].strip() for line in lines[1:11]] == [f"typo{i}" for i in range(10)]
    assert lines[-1] == "  ... and 2 more"
    assert len(error.lines()) == 11 and "and 2 more" in error.lines()[-1]


def test_a_single_mistake_keeps_its_one_line_message():
    with pytest.raises(RecipeError) as info:
        load_recipe(None, ["model.activaton=relu"])
    expected = f"{DEFAULT_RECIPE}: model.activaton: unknown key; did you mean model.activation?"
    assert str(info.value) == expected
    assert info.value.lines() == [expected]
    assert info.value.problems == ["model.activaton: unknown key; did you mean model.activation?"]


def test_a_components_parameters_and_own_fields_are_all_checked():
    overrides = [
        "optimizer={name: momentum, rho: 2, dampning: 0, lr: -1}",
        "model.activaton=relu",
    ]
    with pytest.raises(RecipeError) as info:
        load_recipe(None, overrides)
    keys = [p.split(":")[0] for p in info.value.problems]
    assert sorted(keys) == [
        "model.activaton",
        "optimizer.dampning",
        "optimizer.lr",
        "optimizer.rho",
    ]
    assert any("did you mean 'dampening'?" in p for p in info.value.problems)


def test_every_cross_section_problem_is_reported():
    overrides = [
        "training.early_stopping={patience: 2}",
        "data.val_fraction=0",
        "optimizer.lr_scaling=linear",
        "schedule.warmup_epochs=50",
    ]
    with pytest.raises(RecipeError) as info:
        load_recipe(None, overrides)
    text = str(info.value)
    assert "3 problems" in text
    assert "needs a validation split" in text and "needs optimizer.base_batch_size" in text
    assert "schedule.warmup_epochs=50 is not shorter than" in text


def test_a_union_field_is_one_problem():
    with pytest.raises(RecipeError) as info:
        load_recipe(None, ["training.deterministic=maybe"])
    (problem,) = info.value.problems
    assert problem.startswith("training.deterministic: ") and "'warn'" in problem


# per-position statistics (standardize, pca, zca) and augmentations that move positions


def test_preprocess_defaults_to_auto_and_the_field_says_what_it_picks():
    assert Recipe().preprocess.name == "auto"
    assert validate({}).preprocess.name == "auto"
    described = Recipe.model_fields["preprocess"].annotation.model_fields["name"].description
    assert "per_channel" in described and "standardize" in described


@pytest.mark.parametrize("pre", ["standardize", "pca", "zca"])
@pytest.mark.parametrize(
    "augment",
    [
        "random_crop",
        "hflip",
        "translate",
        "rotate",
        "shear",
        "scale",
        "affine",
        "random_resized_crop",
        "multiscale",
        "randaugment",
        "trivialaugment",
        "autoaugment",
        "shift",
        "time_scale",
    ],
)
def test_per_position_scaling_with_a_moving_augment_is_one_line_naming_both(pre, augment):
    with pytest.raises(RecipeError) as info:
        validate({"preprocess": pre, "augment": ["mixup", augment]})
    (problem,) = info.value.problems
    assert problem == (
        f"preprocess.name={pre} with augment[1] {augment}: per-position statistics are wrong "
        "on shifted inputs (values reach hundreds); use preprocess: per_channel"
    )


def test_every_moving_augment_is_named_in_the_one_line():
    with pytest.raises(RecipeError) as info:
        validate({"preprocess": "standardize", "augment": ["hflip", "cutout", "random_crop"]})
    (problem,) = info.value.problems
    assert problem.startswith("preprocess.name=standardize with augment[0] hflip, augment[2] ")


@pytest.mark.parametrize(
    "pre, augment",
    [
        ("auto", ["random_crop", "rotate"]),  # resolves to per_channel on images
        ("per_channel", ["random_crop", "randaugment"]),
        ("per_channel_mean", ["random_crop"]),
        ("zero_center", ["random_crop"]),
        ("mean_image", ["translate"]),
        ("none", ["affine"]),
        ("standardize", ["cutout", "random_erasing", "mixup", "cutmix", "color_jitter"]),
        ("zca", ["amplitude", "gaussian_noise", "pca_lighting"]),
        ("standardize", []),
    ],
)
def test_combinations_that_keep_positions_or_statistics_are_accepted(pre, augment):
    validate({"preprocess": pre, "augment": augment})


def test_every_augment_declares_whether_it_moves_positions():
    for entry in AUGMENTS:
        assert isinstance(entry.info.get("moves_positions"), bool), entry.name


def test_shipped_recipes_validate_and_the_two_copies_are_identical():
    shipped = sorted(DEFAULT_RECIPE.parent.glob("*.yaml"))
    repo = Path(__file__).parents[1] / "recipes"
    assert [p.name for p in shipped] == sorted(p.name for p in repo.glob("*.yaml"))
    for path in shipped:
        if not path.stem.endswith("_space"):  # the search spaces: tests/tuning/test_space.py
            load_recipe(path)
        assert path.read_text() == (repo / path.name).read_text(), path.name


def test_the_cli_refuses_standardize_with_the_default_random_crop_before_anything_runs(
    tmp_path: Path,
):
    run = tmp_path / "X"
    done = run_cli("train", "preprocess=standardize", "--out", str(run))
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert (
        "preprocess.name=standardize with augment[0] random_crop: per-position statistics are "
        "wrong on shifted inputs (values reach hundreds); use preprocess: per_channel"
    ) in lines[0]
    assert not run.exists() and list(tmp_path.iterdir()) == []
