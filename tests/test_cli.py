"""The command line as a user meets it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import yaml

from tests.conftest import last_json, run_cli, run_cli_imports
from trainlab.version import __version__

QUICK = ["model.name=mlp", "model.widths=[64]", "augment=[]", "training.epochs=4"]


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_train_json_prints_the_summary_last_and_evaluate_reads_the_run(tmp_path: Path):
    run = tmp_path / "run"
    done = run_cli("train", *QUICK, "--out", str(run), "--json", "--no-progress")
    assert done.returncode == 0, done.stderr
    summary = last_json(done.stdout)
    assert summary["test_acc"] > 0.8 and summary["run_dir"] == str(run)
    report = run_cli("evaluate", str(run), "--json")
    assert report.returncode == 0, report.stderr
    result = last_json(report.stdout)
    assert abs(result["test_acc"] - summary["test_acc"]) < 1e-9
    assert len(result["per_class_acc"]) == 10
    assert Path(result["confusion_png"]).read_bytes()[:4] == b"\x89PNG"


def test_misspelled_key_exits_2_with_one_line_and_touches_nothing(tmp_path: Path):
    run = tmp_path / "existing"
    run.mkdir()
    (run / "note.txt").write_text("keep me")
    done = run_cli("train", "model.activaton=relu", "--out", str(run))
    assert done.returncode == 2
    line = _one_error_line(done.stderr)
    assert "model.activaton: unknown key; did you mean model.activation?" in line
    assert sorted(p.name for p in run.iterdir()) == ["note.txt"]


def test_wrong_type_exits_2(tmp_path: Path):
    done = run_cli("train", "training.batch_size=many", "--out", str(tmp_path / "r"))
    assert done.returncode == 2
    assert "training.batch_size" in _one_error_line(done.stderr)
    assert not (tmp_path / "r").exists()


def test_label_out_of_range_exits_2_naming_file_and_row(tmp_path: Path):
    x = np.zeros((50, 3), np.float32)
    y = np.zeros(50, np.int64)
    y[37] = 12
    np.savez(
        tmp_path / "bad.npz",
        x_train=x,
        y_train=y,
        x_test=x,
        y_test=np.zeros(50, np.int64),
        classes=np.array([str(i) for i in range(10)]),
    )
    run = tmp_path / "run"
    done = run_cli(
        "train", f"data={{name: npz, path: {tmp_path / 'bad.npz'}}}", *QUICK, "--out", str(run)
    )
    assert done.returncode == 2
    line = _one_error_line(done.stderr)
    assert "bad.npz" in line and "row 37" in line and "12" in line
    assert not run.exists()


def test_resume_without_a_run_folder_is_a_clear_error(tmp_path: Path):
    # (--resume into a folder with no checkpoint yet starts that run from step 0: see api.train)
    done = run_cli("train", "--resume", cwd=tmp_path)
    assert done.returncode == 2
    assert "--resume needs --out DIR" in _one_error_line(done.stderr)


def test_list_shows_every_family_and_refuses_unknown_kinds():
    done = run_cli("list", "--json")
    assert done.returncode == 0
    families = last_json(done.stdout)
    for kind in (
        "activation",
        "init",
        "norm",
        "loss",
        "optimizer",
        "schedule",
        "model",
        "dataset",
        "preprocess",
        "augment",
    ):
        assert families[kind], kind
    assert "leaky_relu" in families["activation"]
    assert families["activation"]["leaky_relu"]["params"] == {"alpha": 0.01}
    bad = run_cli("list", "optimiser")
    assert bad.returncode == 2
    assert "did you mean 'optimizer'?" in _one_error_line(bad.stderr)


def test_augment_json_reports_the_png_it_wrote(tmp_path: Path):
    out = tmp_path / "grid.png"
    pipeline = "augment=[hflip, {name: random_crop, padding: 2}]"
    done = run_cli("augment", pipeline, "-o", str(out), "--n", "8", "--seed", "1", "--json")
    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert result["path"] == str(out) and result["samples"] == 8 and result["draws"] == 3
    assert result["seed"] == 1
    assert [a["name"] for a in result["augment"]] == ["hflip", "random_crop"]
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == result["width"]
    assert int.from_bytes(data[20:24], "big") == result["height"]


def test_augment_bad_recipe_key_exits_2_with_one_line_and_writes_nothing(tmp_path: Path):
    out = tmp_path / "grid.png"
    done = run_cli("augment", "augment=[{name: hflp}]", "-o", str(out))
    assert done.returncode == 2
    assert "did you mean 'hflip'?" in _one_error_line(done.stderr)
    done = run_cli("augment", "data.nme=digits", "-o", str(out), "--json")
    assert done.returncode == 2
    assert "data.nme: unknown key; did you mean data.name?" in _one_error_line(done.stderr)
    assert "error" in last_json(done.stdout)
    assert list(tmp_path.iterdir()) == []


def test_every_recipe_mistake_is_one_line_and_json_lists_them(tmp_path: Path):
    recipe = tmp_path / "three.yaml"
    recipe.write_text(
        "model: {activaton: relu}\noptimizer: {lr: -1}\ntraining: {batch_size: many}\n"
    )
    done = run_cli("train", str(recipe), "--out", str(tmp_path / "r"), "--json")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 3, done.stderr
    keys = ["model.activaton", "optimizer.lr", "training.batch_size"]
    for line, key in zip(lines, keys, strict=True):
        assert line.startswith(f"trainlab: error: {recipe}: {key}: "), line
    assert "did you mean model.activation?" in lines[0]
    result = last_json(done.stdout)
    assert [p.split(":")[0] for p in result["problems"]] == keys
    assert result["error"].splitlines()[0] == f"{recipe}: 3 problems"
    assert not (tmp_path / "r").exists()


def test_more_than_ten_recipe_mistakes_print_ten_lines_and_a_count(tmp_path: Path):
    recipe = tmp_path / "many.yaml"
    recipe.write_text("".join(f"typo{i}: 1\n" for i in range(12)))
    done = run_cli("train", str(recipe), "--out", str(tmp_path / "r"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 11, done.stderr
    assert all("unknown key" in line for line in lines[:10])
    assert "and 2 more" in lines[-1]


EPOCH_LINE = re.compile(
    r"^epoch +(\d+)/(\d+) loss \d+\.\d{3} acc \d\.\d{3} val_loss \d+\.\d{3} val_acc \d\.\d{3} "
    r"lr \d\.\de[-+]?\d+ \d+(\.\d)?s( \*)?$"
)


def test_piped_output_is_not_wrapped_so_tail_reads_the_whole_result(tmp_path: Path):
    run = tmp_path / ("a-run-folder-with-a-long-name-" + "x" * 40)  # the line is > 80 columns
    done = run_cli("train", *QUICK, "--out", str(run))  # stdout and stderr are pipes
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    summary = json.loads((run / "summary.json").read_text())
    assert last.startswith("val_acc ") and last.endswith(f"-> {run}"), done.stdout
    assert f"test_acc {summary['test_acc']:.4f}" in last and "samples/s" in last
    assert len(last) > 80
    # stderr is a pipe too: no bar, even without --no-progress, but the epoch lines
    assert "━" not in done.stderr
    assert [EPOCH_LINE.match(x) is not None for x in done.stderr.splitlines()] == [True] * 4


def test_no_progress_prints_one_line_per_epoch_marking_the_best(tmp_path: Path):
    run = tmp_path / "run"
    done = run_cli("train", *QUICK, "--out", str(run), "--no-progress")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 4, done.stderr
    matches = [EPOCH_LINE.match(line) for line in lines]
    assert all(matches), done.stderr
    assert [(m[1], m[2]) for m in matches] == [(str(e), "4") for e in range(1, 5)]
    best = json.loads((run / "summary.json").read_text())["val"]["best"]["epoch"]
    assert lines[best - 1].endswith(" *"), done.stderr
    assert lines[0].endswith(" *")  # the first validation is always the best so far


def _stderr_until(proc: subprocess.Popen, pattern: str) -> str:
    """Read ``proc``'s stderr line by line until one matches ``pattern`` (that line)."""
    for line in proc.stderr:
        if re.search(pattern, line):
            return line.rstrip("\n")
    raise AssertionError(f"the run ended (exit {proc.wait()}) before printing {pattern!r}")


def test_version_is_printed_without_importing_torch():
    done, imported = run_cli_imports("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"trainlab {__version__}"
    assert "torch" not in imported and "numpy" not in imported


def test_help_imports_neither_torch_nor_the_recipe_schema():
    done, imported = run_cli_imports("--help")
    assert done.returncode == 0, done.stderr
    assert "train" in done.stdout and "ensemble" in done.stdout
    assert not imported & {"torch", "numpy", "trainlab.recipe", "trainlab.api"}


def test_a_shipped_recipe_is_found_by_name_from_any_folder(tmp_path: Path):
    found = run_cli("train", "mnist1d", "training.epochs=0", cwd=tmp_path)  # refused once read
    assert found.returncode == 2
    assert "src/trainlab/recipes/mnist1d.yaml: training.epochs:" in _one_error_line(found.stderr)
    bad = run_cli("train", "mnist", "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert bad.returncode == 2
    line = _one_error_line(bad.stderr)
    assert "mnist: no such recipe file" in line
    assert "shipped recipes: cifar10, digits, mnist1d" in line
    assert not (tmp_path / "r").exists()


def test_a_short_run_of_a_recipe_with_a_warm_up_names_the_fix(tmp_path: Path):
    done = run_cli("train", "training.epochs=1", "--out", str(tmp_path / "r"))
    assert done.returncode == 2
    line = _one_error_line(done.stderr)
    assert "schedule.warmup_epochs=1 is not shorter than training.epochs=1" in line
    assert "add schedule.warmup_epochs=0" in line  # which the one-epoch runs of tests/ use


def _tour() -> list[str]:
    """The command lines of the README's tour, comments cut off."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("## A tour", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split(" #")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readme_tour_runs_as_written(tmp_path: Path):
    """train, resume, evaluate and predict as the tour writes them, in an empty folder (the
    shipped recipe by its name); the first training is shortened by appended overrides, the
    rest run exactly as written: the resume re-reads the run's own recipe.yaml."""
    tour = _tour()
    train = next(line for line in tour if line.startswith("trainlab train mnist1d"))
    later = [
        next(line for line in tour if line.startswith(f"trainlab {command}"))
        for command in ("train --out runs/m1 --resume", "evaluate runs/m1", "predict runs/m1")
    ]
    quick = ["training.epochs=3", "model.channels=[8]", "model.depth=1", "--no-progress"]
    done = run_cli(*shlex.split(train)[1:], *quick, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    card = json.loads((tmp_path / "runs/m1/model.json").read_text())
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "new.npz", x=rng.normal(size=(5, *card["in_shape"])).astype(np.float32))
    for line in later:
        done = run_cli(*shlex.split(line)[1:], cwd=tmp_path)
        assert done.returncode == 0, f"{line}\n{done.stderr}"
    recipe = yaml.safe_load((tmp_path / "runs/m1/recipe.yaml").read_text())
    assert recipe["seed"] == 3 and recipe["optimizer"]["lr"] == 0.01
    assert len((tmp_path / "pred.csv").read_text().splitlines()) == 6


def test_list_summaries_lose_their_rest_markup():
    from trainlab.cli import plain

    assert plain("each of ``widths``, see :class:`~trainlab.engine.best.Best`") == (
        "each of widths, see Best"
    )
    assert plain(":func:`trainlab.train` at bin `magnitude`") == "trainlab.train at bin magnitude"
    done = run_cli("list", "model")  # piped: not wrapped, so every summary is one whole line
    assert done.returncode == 0, done.stderr
    assert "for each of widths." in done.stdout and "``" not in done.stdout
