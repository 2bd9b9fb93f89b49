"""The command line as a user meets it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.conftest import last_json, run_cli

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


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path):
    done = run_cli("train", "--out", str(tmp_path / "nothing"), "--resume")
    assert done.returncode == 2
    assert "no checkpoint to resume from" in _one_error_line(done.stderr)


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
