"""``trainlab doctor`` end to end: the default recipe is healthy on every check, the report opens
in headless Chromium with every figure, and the CLI prints one line per finding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import trainlab
from tests.browser import open_page
from tests.conftest import last_json, run_cli
from trainlab.diagnosis.doctor import CHECKS

QUICK_RUN = ["training.progress=false", "training.epochs=4"]


@pytest.fixture(scope="module")
def default_report(tmp_path_factory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("doctor")
    trainlab.train(None, QUICK_RUN, out=root / "run", progress=False)
    result = trainlab.doctor(None, [], out=root / "report", run=root / "run")
    return result, root / "report"


def test_the_default_recipe_is_healthy_on_every_check(default_report):
    result, _ = default_report
    checks = {f["check"].split(".")[0] for f in result["findings"]}
    assert checks == set(CHECKS)
    assert result["status"] == "ok", [
        f["summary"] for f in result["findings"] if f["status"] != "ok"
    ]


def test_the_report_opens_in_chromium_with_every_figure(default_report):
    result, folder = default_report
    figures = {name for f in result["findings"] for name in f["figures"]}
    assert {"data.png", "layers.png", "lr_range.png", "curves.png"} <= figures
    saved = json.loads((folder / "findings.json").read_text())
    assert saved["status"] == "ok" and len(saved["findings"]) == len(result["findings"])
    with open_page((folder / "report.html").as_uri()) as (page, problems):
        images = page.evaluate(
            "[...document.images].map(i => ({src: i.getAttribute('src'), complete: i.complete,"
            " width: i.naturalWidth}))"
        )
        page.screenshot(path=str(folder / "screenshot.png"), full_page=True)
    assert problems == []
    assert {i["src"] for i in images} == figures
    assert all(i["complete"] and i["width"] > 0 for i in images), images


def test_cli_prints_a_line_per_finding_and_json(tmp_path: Path):
    out = tmp_path / "doc"
    result = run_cli("doctor", "--checks", "data,initial_loss", "-o", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["ok"] * 6  # 5 data findings + loss
    assert lines[-1] == f"ok: report -> {out / 'report.html'}"
    result = run_cli("doctor", "--checks", "initial_loss", "-o", str(out), "--json")
    assert last_json(result.stdout)["findings"][0]["check"] == "initial_loss"


def test_an_unknown_check_is_one_line_and_exit_2(tmp_path: Path):
    result = run_cli("doctor", "--checks", "data,overfitt", "-o", str(tmp_path / "d"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "trainlab: error: --checks: unknown check 'overfitt'; valid: " + ", ".join(CHECKS)
    ]
    assert not (tmp_path / "d").exists()


def test_the_doctor_leaves_the_callers_global_state_alone(tmp_path: Path):
    import torch

    torch.manual_seed(123)
    before = torch.get_rng_state()
    trainlab.doctor(
        None, ["training.deterministic=true"], out=tmp_path / "d", checks=("initial_loss",)
    )
    assert torch.equal(torch.get_rng_state(), before)
    assert not torch.are_deterministic_algorithms_enabled()


def test_an_unwritable_report_folder_is_one_line(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_cli("doctor", "--checks", "data", "-o", str(blocker / "report"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "cannot create the report folder" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("name", CHECKS)
def test_every_registered_check_reports_on_the_default_recipe(default_report, name: str):
    """One test per check of the registry (``trainlab list check``): it ran, it said ok, and
    the figure it names was written."""
    from trainlab.diagnosis.doctor import CHECK_REGISTRY

    result, folder = default_report
    entry = CHECK_REGISTRY.get(name)
    assert entry.summary  # what `trainlab list check` shows
    mine = [f for f in result["findings"] if f["check"].split(".")[0] == name]
    assert mine, f"{name} made no finding"
    for finding in mine:
        assert finding["status"] == "ok", finding
        assert all((folder / figure).is_file() for figure in finding["figures"])


def test_a_failing_check_exits_1_and_strict_counts_warnings(tmp_path: Path):
    """The documented exit codes: 1 when a check fails; with --strict also when one warns."""
    failed = run_cli(
        "doctor", "model.init={name: normal, std: 10}", "--checks", "initial_loss",
        "-o", str(tmp_path / "f"),
    )  # fmt: skip
    assert failed.returncode == 1, failed.stderr
    assert failed.stdout.splitlines()[0].startswith("fail initial_loss: ")
    assert failed.stdout.splitlines()[-1].startswith("fail: report -> ")
    warned = run_cli(
        "doctor", "preprocess.name=none", "--checks", "data", "--strict", "-o", str(tmp_path / "w")
    )
    assert warned.returncode == 1, warned.stderr
    assert warned.stdout.splitlines()[-1].startswith("warn: report -> ")


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("mlp") / "run"
    trainlab.train(None, ["model.name=mlp", *QUICK_RUN], out=run, progress=False)
    return run


def test_run_without_a_recipe_diagnoses_the_runs_own_recipe(mlp_run: Path, tmp_path: Path):
    """--run RUN alone used to diagnose the default (convnet) recipe against an MLP's curves."""
    result = trainlab.doctor(None, [], out=tmp_path / "d", run=mlp_run, checks=("layers",))
    layers = next(f for f in result["findings"] if f["check"] == "layers.activations")
    assert "Conv" not in layers["summary"] and "Linear" in json.dumps(layers["values"])
    saved = json.loads((tmp_path / "d" / "findings.json").read_text())
    assert saved["title"] == f"trainlab doctor: recipe 'digits', run {mlp_run}"
    assert result["run"] == str(mlp_run)


def test_a_recipe_that_differs_from_the_runs_is_a_warning_naming_the_keys(
    mlp_run: Path, tmp_path: Path
):
    from trainlab.errors import TrainlabWarning

    with pytest.warns(TrainlabWarning, match=r"differs from the one given in model\.name"):
        result = trainlab.doctor(None, ["model.name=convnet"], out=tmp_path / "d", run=mlp_run,
                                 checks=("initial_loss",))  # fmt: skip
    assert result["status"] == "ok"


def test_a_full_batch_recipe_gets_every_check_that_applies(tmp_path: Path):
    """L-BFGS used to end the doctor in a traceback (`step() missing ... 'closure'`)."""
    result = trainlab.doctor(
        None, ["optimizer={name: lbfgs, lr: 1.0}", "model.name=mlp"], out=tmp_path / "d"
    )
    by_check = {f["check"]: f for f in result["findings"]}
    assert by_check["lr_range"]["summary"].startswith("not applicable: lbfgs")
    assert by_check["layers.updates"]["summary"].startswith("not applicable")
    assert by_check["overfit"]["status"] == "ok", by_check["overfit"]["summary"]
    assert result["status"] == "ok", [
        f["summary"] for f in result["findings"] if f["status"] != "ok"
    ]


def test_fix_proves_the_fix_on_a_symmetric_init(tmp_path: Path):
    """model.init=zeros: the doctor names the symmetric units (not the lr), tries the fitting
    init, re-runs the failed checks and keeps it because they pass."""
    result = trainlab.doctor(
        None, ["model.init=zeros"], out=tmp_path / "d", checks=("layers",), fix=True
    )
    symmetry = next(f for f in result["findings"] if f["check"] == "layers.symmetry")
    assert symmetry["status"] == "fail" and symmetry["fix"] == ["model.init=kaiming_normal"]
    others = [f for f in result["findings"] if f["status"] != "ok" and f is not symmetry]
    assert all(f["advice"].startswith("follows from layers.symmetry") for f in others), others
    assert result["fixes"][0]["fix"] == ["model.init=kaiming_normal"]
    assert result["fixes"][0]["kept"] and result["keep"] == ["model.init=kaiming_normal"]
    assert set(result["fixes"][0]["after"].values()) == {"ok"}


def test_fix_ends_with_the_command_to_keep(capsys):
    """The last line of --fix: the recipe and the overrides diagnosed, less those a kept fix
    replaces, then the kept fixes (quoted for the shell)."""
    from trainlab.cli import _print_fixes

    trial = {"fix": ["model.init=kaiming_normal"], "target": "layers.symmetry",
             "before": {"layers": "fail"}, "after": {"layers": "ok"}, "kept": True}  # fmt: skip
    result = {"fixes": [trial], "keep": ["model.init=kaiming_normal"]}
    _print_fixes(result, "mnist1d", ["model.init=zeros", "optimizer={name: sgd}"], None)
    assert capsys.readouterr().out.splitlines() == [
        "fix model.init=kaiming_normal (for layers.symmetry): layers fail -> ok (kept)",
        "keep: trainlab train mnist1d 'optimizer={name: sgd}' model.init=kaiming_normal",
    ]
