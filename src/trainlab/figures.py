"""Figures without matplotlib's global state: the one place trainlab makes and writes a figure.

Why not matplotlib's state-machine interface: it is global. Choosing a backend for it (Agg, so
that no display is needed) switches the backend of the whole process, so a notebook user who
called a trainlab function would find their inline or interactive plots gone; and each figure
it makes stays registered in its global figure manager until closed, so a missed close leaks.

A :class:`matplotlib.figure.Figure` made directly needs neither: :func:`new_figure` gives it its
own Agg canvas (an object attached to this figure only, not a backend choice), so it can be
drawn, measured and saved whatever backend the process uses, and it is freed like any other
object once unreferenced. :func:`save_figure` writes it through :func:`trainlab.files.atomic_path`:
a reader (the doctor's report, a browser refreshing the page) sees the previous image or the new
one, never half a PNG, and a failed save leaves the previous file and no temporary file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.files import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["blank_figure", "new_figure", "save_figure"]


def blank_figure(width: float, height: float, *, dpi: float | None = None) -> Figure:
    """A figure of ``width`` x ``height`` inches with no axes (for ``fig.add_axes`` layouts).

    ``dpi`` defaults to ``rcParams["figure.dpi"]``, as for any matplotlib figure. The figure has
    its own Agg canvas, so ``fig.canvas.draw()`` and ``fig.canvas.get_renderer()`` work; no
    backend is selected and no global figure manager holds it (nothing to close).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    return fig


def new_figure(
    width: float,
    height: float,
    *,
    nrows: int = 1,
    ncols: int = 1,
    dpi: float | None = None,
    **subplots: Any,
) -> tuple[Figure, Any]:
    """``(figure, axes)`` as ``subplots(nrows, ncols, figsize=(width, height))`` gives them, but
    without global state (see :func:`blank_figure`).

    ``subplots`` go to :meth:`Figure.subplots` (``squeeze``, ``sharex``, ``sharey``, ...): by
    default one axes comes back as itself, a row or a column as a 1-D array, a grid as 2-D.
    """
    fig = blank_figure(width, height, dpi=dpi)
    return fig, fig.subplots(nrows, ncols, **subplots)


def save_figure(fig: Figure, path: str | Path, *, dpi: float | None = None, **savefig: Any) -> Path:
    """Write ``fig`` to ``path`` atomically and return the path; the parent folder is created.

    The format comes from the suffix (PNG without one); ``dpi`` defaults to the figure's own, so
    a user's ``rcParams["savefig.dpi"]`` does not change trainlab's images. ``savefig`` goes to
    :meth:`Figure.savefig`. On any failure the previous file at ``path`` is left as it was and
    no temporary file remains (:func:`trainlab.files.atomic_path`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # an explicit format: without one, a suffixless name would get ".png" appended by savefig
    fmt = path.suffix[1:].lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=fig.dpi if dpi is None else dpi, **savefig)
    return path
