"""The doctor's HTML report: self-contained, escaped, every figure loaded in headless Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tests.browser import open_page  # noqa: E402
from trainlab.diagnosis.findings import Finding  # noqa: E402
from trainlab.diagnosis.report import render_html, write_report  # noqa: E402


def png(folder: Path, name: str, seed: int) -> str:
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(np.random.default_rng(seed).normal(size=50).cumsum())
    ax.set_title(name)
    fig.savefig(folder / name, dpi=80)
    plt.close(fig)
    return name


def findings(folder: Path) -> list[Finding]:
    return [
        Finding("initial_loss", "ok", "loss at init 2.31, expected ln 10 = 2.30", "", {"x": 2.31}),
        Finding(
            "curves",
            "warn",
            "overfitting: val loss rose 40% above its minimum <0.5> & kept rising",
            "regularise <script>alert(1)</script>, augment, stop earlier",
            {"val_rise": 0.4},
            (png(folder, "curves.png", 0),),
            cause="regularization",
            fix=("optimizer.weight_decay=0.05", "training.early_stopping.patience=5"),
        ),
        Finding(
            "data.balance",
            "fail",
            "1 class has no training example: 'cat'",
            "add examples",
            {},
            (png(folder, "samples per class.png", 1), png(folder, "second.png", 2)),
        ),
    ]


RECIPE = "name: digits\ndata:\n  name: digits  # <b>not bold</b>\n"


def test_report_files_and_escaping(tmp_path: Path):
    fs = findings(tmp_path)
    page = write_report(fs, tmp_path, "doctor: digits <recipe>", RECIPE)
    assert page == tmp_path / "report.html"
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;b&gt;not bold&lt;/b&gt;" in text and "doctor: digits &lt;recipe&gt;" in text
    assert not re.search(r'(src|href)="(https?:)?//', text)  # nothing from outside the folder
    assert 'src="samples%20per%20class.png"' in text
    assert "<code>optimizer.weight_decay=0.05 training.early_stopping.patience=5</code>" in text
    assert "Cause: <code>regularization</code>" in text
    data = json.loads((tmp_path / "findings.json").read_text())
    assert data["status"] == "fail" and [f["check"] for f in data["findings"]] == [
        "initial_loss",
        "curves",
        "data.balance",
    ]


def test_missing_figure_is_named_not_broken(tmp_path: Path):
    f = Finding("curves", "ok", "fine", figures=("nowhere.png",))
    text = render_html([f], "t", folder=tmp_path)
    assert "<img" not in text and "nowhere.png was not written" in text


def test_report_opens_in_headless_chromium_with_every_figure(tmp_path: Path):
    fs = findings(tmp_path)
    page_path = write_report(fs, tmp_path, "doctor: digits", RECIPE)
    with open_page(page_path.as_uri()) as (page, problems):
        images = page.evaluate(
            "[...document.images].map(i => ({src: i.getAttribute('src'), complete: i.complete,"
            " width: i.naturalWidth}))"
        )
        rows = page.locator("tbody tr").count()
        fail_colour = page.evaluate(
            "getComputedStyle(document.querySelector('.badge.fail')).backgroundColor"
        )
        shot = tmp_path / "shot.png"
        page.screenshot(path=str(shot), full_page=True)
        title = page.title()
    assert problems == []
    assert sorted(i["src"] for i in images) == [
        "curves.png",
        "samples%20per%20class.png",
        "second.png",
    ]
    assert all(i["complete"] and i["width"] > 0 for i in images), images
    assert rows == 3 and title == "doctor: digits"
    assert fail_colour == "rgb(207, 34, 46)"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_browser_helper_reports_a_broken_image(tmp_path: Path):
    """The check above can fail: a page with a missing image is reported, not passed."""
    (tmp_path / "p.html").write_text('<!DOCTYPE html><img src="gone.png">', encoding="utf-8")
    with open_page((tmp_path / "p.html").as_uri()) as (page, problems):
        width = page.evaluate("document.images[0].naturalWidth")
    assert width == 0 and any("gone.png" in p or "ERR_FILE_NOT_FOUND" in p for p in problems)
