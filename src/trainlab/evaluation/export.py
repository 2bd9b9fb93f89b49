"""``trainlab export``: a trained run as one self-contained file, preprocessing inside the graph.

The exported module takes raw inputs (float32, shape ``(N, *in_shape)``, uint8 images already
scaled to [0, 1] as the datasets do) and returns class probabilities, exactly what
:meth:`Predictor.predict_proba` returns: the fitted preprocessing (standardisation, PCA/ZCA
whitening, ...) is part of the graph, so a deployment cannot forget or mis-copy it.

- ``torchscript``: ``torch.jit.trace`` of the eval-mode model (every trainlab model is
  traceable: no data-dependent control flow at eval); loads with ``torch.jit.load``, no
  trainlab needed.
- ``onnx``: ``torch.onnx.export`` (torch's exporter, which needs the ``onnx`` and
  ``onnxscript`` packages: ``pip install 'trainlab[onnx]'``), with a dynamic batch dimension.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainlab.errors import TrainlabError
from trainlab.evaluation.predictor import Predictor, probabilities
from trainlab.files import atomic_path

__all__ = ["FORMATS", "ProbabilityModel", "export_run"]

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}


class ProbabilityModel(nn.Module):
    """Raw inputs -> preprocessing -> model -> class probabilities, in one module."""

    def __init__(self, preprocess: nn.Module, model: nn.Module) -> None:
        super().__init__()
        self.preprocess, self.model = preprocess, model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return probabilities(self.model(self.preprocess(x)).float())


def export_run(
    predictor: Predictor, fmt: str = "torchscript", out: str | Path | None = None
) -> dict[str, Any]:
    """Write ``predictor``'s model as ``fmt`` to ``out`` (default ``RUN/model.pt`` or
    ``RUN/model.onnx``), atomically; returns what was written."""
    if fmt not in FORMATS:
        raise TrainlabError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    run = predictor.run_dir or Path(".")
    path = Path(out) if out is not None else run / f"model{FORMATS[fmt]}"
    module = ProbabilityModel(predictor.preprocess, predictor.model).to("cpu").eval()
    example = torch.zeros(2, *predictor.in_shape)
    with atomic_path(path) as tmp:
        if fmt == "torchscript":
            _torchscript(module, example, tmp)
        else:
            _onnx(module, example, tmp)
    predictor.model.to(predictor.device)
    predictor.preprocess.to(predictor.device)
    return {
        "path": str(path),
        "format": fmt,
        "input_shape": ["N", *predictor.in_shape],
        "output": f"probabilities (N, {len(predictor.classes)})",
        "classes": predictor.classes,
        "weights": predictor.weights,
    }


def _torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's own deprecation notice: it still works
        traced = torch.jit.trace(module, example, check_trace=False)
    traced.save(str(path))


def _onnx(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise TrainlabError(
            "--format onnx needs the onnx and onnxscript packages: pip install 'trainlab[onnx]'"
        ) from None
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (example,),
            input_names=["x"],
            output_names=["probabilities"],
            dynamic_shapes=({0: batch},),
            dynamo=True,
        )
    program.save(str(path))
