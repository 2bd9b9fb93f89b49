"""Search spaces: distributions parsed from text, checked against the recipe, narrowed by rule."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from trainlab.errors import RecipeError
from trainlab.recipe import load_recipe
from trainlab.tuning.space import Distribution, load_space, narrowed, parse_distribution
from trainlab.tuning.stages import Stage, parse_stages, stage_overrides


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("loguniform(1e-5, 1e-2)", Distribution("loguniform", 1e-5, 1e-2, True)),
        ("uniform(0, 0.5, step=0.1)", Distribution("uniform", 0, 0.5, False, 0.1)),
        ("int(16, 256, log=true)", Distribution("int", 16, 256, True)),
        ("int(1, 9, step: 2)", Distribution("int", 1, 9, False, 2)),
        ("choice([relu, gelu])", Distribution("choice", choices=("relu", "gelu"))),
        ("choice(relu, tanh)", Distribution("choice", choices=("relu", "tanh"))),
        ("grid([1e-4, 1e-5, 0])", Distribution("grid", choices=(1e-4, 1e-5, 0))),
    ],
)
def test_distributions_parse_and_round_trip(text: str, expected: Distribution) -> None:
    dist = parse_distribution(text)
    assert dist == expected
    assert parse_distribution(dist.text()) == dist
    assert Distribution.from_json(dist.to_json()) == dist


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("loguniform(0, 1)", "a log scale needs a low bound above 0"),
        ("normal(0, 1)", "unknown distribution 'normal'"),
        ("uniform(2, 1)", "the low bound must be below the high bound"),
        ("int(1.5, 3)", "two whole numbers"),
        ("choice([])", "at least one value"),
        ("choice([a, a])", "listed twice"),
        ("loguniform(1e-3)", "two numbers"),
        ("int(1, 5, lg=true)", "unknown argument 'lg'"),
        (3, "expected a distribution"),
        ("__import__('os')", "unknown distribution '__import__'"),
    ],
)
def test_malformed_distributions_say_what_was_expected(text: object, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)")):
        parse_distribution(text)


def test_grid_points_span_the_range_in_log_space() -> None:
    lr = parse_distribution("loguniform(1e-4, 1e-2)")
    assert lr.grid_points(3) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert parse_distribution("int(16, 256, log=true)").grid_points(3) == [16, 64, 256]
    assert parse_distribution("choice([a, b])").grid_points(5) == ["a", "b"]


def test_suggest_goes_through_optuna_with_the_key_as_parameter_name() -> None:
    space = load_space_text(
        "optimizer.lr: loguniform(1e-4, 1e-2)\nmodel.activation: choice([relu, tanh])\n"
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    values = space.suggest(trial)
    assert set(values) == {"optimizer.lr", "model.activation"}
    dist = trial.distributions["optimizer.lr"]
    assert isinstance(dist, optuna.distributions.FloatDistribution) and dist.log
    assert 1e-4 <= values["optimizer.lr"] <= 1e-2


def load_space_text(text: str, tmp: Path | None = None, recipe: str = "digits"):
    import tempfile

    folder = Path(tmp or tempfile.mkdtemp())
    path = folder / "space.yaml"
    path.write_text(text)
    return load_space(path, load_recipe(recipe))


def test_every_problem_is_one_line_before_anything_runs(tmp_path: Path) -> None:
    text = (
        "optimizer.lrr: loguniform(1e-4, 1e-2)\n"  # unknown key path
        "optimizer.weight_decay: loguniform(0, 1)\n"  # malformed
        "training.batch_size: int(0, 64)\n"  # the schema refuses batch size 0
        "model.activation: choice([relu, nonsense])\n"  # an unknown registered name
        "seeds: -1\n"
    )
    with pytest.raises(RecipeError) as info:
        load_space_text(text, tmp_path)
    problems = info.value.problems
    assert len(problems) == 5, problems
    joined = "\n".join(problems)
    assert "optimizer.lrr: optimizer 'adamw' has no parameter 'lrr'; did you mean 'lr'?" in joined
    assert "optimizer.weight_decay: 'loguniform(0, 1)': a log scale" in joined
    assert "training.batch_size: int(0, 64): the recipe refuses 0" in joined
    assert "model.activation: choice([relu, nonsense]): the recipe refuses 'nonsense'" in joined
    assert "seeds: expected a whole number" in joined
    assert all("\n" not in p for p in problems)


def test_nested_mappings_are_key_paths_and_settings_are_read(tmp_path: Path) -> None:
    space = load_space_text(
        "optimizer:\n  lr: loguniform(1e-4, 1e-2)\nseeds: 3\nmetric: val_loss\n"
        "stages:\n  coarse: {trials: 6, epochs: 1}\n",
        tmp_path,
    )
    assert list(space.params) == ["optimizer.lr"]
    assert (space.seeds, space.metric) == (3, "val_loss")
    assert space.stages == {"coarse": {"trials": 6, "epochs": 1}}


def test_missing_and_unreadable_space_files(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="search space file not found"):
        load_space(tmp_path / "none.yaml", load_recipe("digits"))
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(RecipeError, match="invalid YAML"):
        load_space(tmp_path / "bad.yaml", load_recipe("digits"))
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(RecipeError, match="a search space is a mapping"):
        load_space(tmp_path / "list.yaml", load_recipe("digits"))


@pytest.mark.parametrize("name", ["digits", "mnist1d"])
def test_shipped_spaces_load_beside_their_recipes(name: str) -> None:
    space = load_space(name, load_recipe(name))
    assert "optimizer.lr" in space.params and space.params["optimizer.lr"].log
    assert [s.name for s in parse_stages(None, space.stages, None, space.source)] == [
        "coarse",
        "fine",
    ]


def test_narrowing_rule_spans_the_best_in_log_space_widened_by_the_margin() -> None:
    space = load_space_text(
        "optimizer.lr: loguniform(1e-5, 1e-1)\nmodel.activation: choice([relu, tanh, gelu])\n"
        "training.batch_size: int(16, 256)\n"
    )
    best = [
        {"optimizer.lr": 1e-3, "model.activation": "relu", "training.batch_size": 64},
        {"optimizer.lr": 1e-2, "model.activation": "gelu", "training.batch_size": 100},
    ]
    fine = narrowed(space, best, margin=0.5).params
    lr = fine["optimizer.lr"]  # span 1 decade, widened half a decade each side
    assert math.log10(lr.low) == pytest.approx(-3.5, abs=1e-3)
    assert math.log10(lr.high) == pytest.approx(-1.5, abs=1e-3)
    assert fine["model.activation"].choices == ("relu", "gelu")
    bs = fine["training.batch_size"]
    assert (bs.low, bs.high) == (46, 118)  # span 36, widened by 18 each side
    clipped = narrowed(space, [{"optimizer.lr": 0.09}, {"optimizer.lr": 0.1}], 0.5)
    assert clipped.params["optimizer.lr"].high == pytest.approx(0.1)  # never past the range
    agree = narrowed(space, [{"optimizer.lr": 1e-3}, {"optimizer.lr": 1e-3}], 0.5)
    low, high = agree.params["optimizer.lr"].low, agree.params["optimizer.lr"].high
    assert low < 1e-3 < high  # a tenth of the original span keeps room to look around


def test_stages_from_the_command_line_and_the_space_file() -> None:
    defined = {"coarse": {"trials": 10, "epochs": 2}, "fine": {"trials": 3, "top": 0.5}}
    assert parse_stages(None, {}, None, "s") == [Stage("search", 20)]
    assert parse_stages(None, {}, 7, "s") == [Stage("search", 7)]
    assert parse_stages("24x3:8x20", {}, None, "s") == [
        Stage("coarse", 24, 3),
        Stage("fine", 8, 20),
    ]
    assert parse_stages("coarse:fine", defined, None, "s") == [
        Stage("coarse", 10, 2),
        Stage("fine", 3, None, 0.5),
    ]
    with pytest.raises(RecipeError, match="'medium' is neither TRIALSxEPOCHS"):
        parse_stages("coarse:medium", defined, None, "s")
    with pytest.raises(RecipeError, match="give --trials or --stages, not both"):
        parse_stages("4x1", {}, 3, "s")
    with pytest.raises(RecipeError, match="stages.coarse.epoch: unknown key"):
        parse_stages(None, {"coarse": {"trials": 2, "epoch": 1}}, None, "s")


def test_a_short_stage_keeps_the_warm_up_as_the_same_fraction_of_the_run() -> None:
    recipe = load_recipe("mnist1d")  # 40 epochs, 2 of warm-up
    assert stage_overrides(recipe, Stage("coarse", 5, 4)) == {
        "training.epochs": 4,
        "schedule.warmup_epochs": 0.2,
    }
    assert stage_overrides(recipe, Stage("fine", 5, None)) == {}
    assert stage_overrides(recipe, Stage("fine", 5, 40)) == {}


def test_a_float_range_on_an_int_key_and_ragged_steps_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as info:
        load_space_text(
            "training.batch_size: uniform(16, 64)\noptimizer.lr: uniform(0, 0.1, step=0.03)\n"
            "optimizer:\n  weight_decay: loguniform(1e-5, 1e-2)\n"
            "optimizer.weight_decay: loguniform(1e-4, 1e-2)\n",
            tmp_path,
        )
    joined = "\n".join(info.value.problems)
    assert "training.batch_size: uniform(16, 64): the recipe refuses" in joined  # 33.76...
    assert "a whole number of steps" in joined
    assert "optimizer.weight_decay: given twice" in joined


def test_narrowing_and_grids_stay_on_the_step_lattice_and_round_outwards() -> None:
    space = load_space_text("training.batch_size: int(8, 128, step=8)\n")
    fine = narrowed(space, [{"training.batch_size": 32}, {"training.batch_size": 40}], 0.5)
    bs = fine.params["training.batch_size"]
    assert bs.low % 8 == 0 and bs.high % 8 == 0 and bs.low <= 32 and bs.high >= 40
    assert all(v % 8 == 0 for v in space.params["training.batch_size"].grid_points(4))
    lr = load_space_text("optimizer.lr: loguniform(1e-5, 1e-1)\n")
    best = [{"optimizer.lr": 0.00123456}, {"optimizer.lr": 0.00123456}]
    tight = narrowed(lr, best, 0.0).params["optimizer.lr"]  # margin 0: rounding alone
    assert tight.low <= 0.00123456 <= tight.high
