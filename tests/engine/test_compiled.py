"""training.compile: the step's forward under torch.compile, and a one-line eager fallback."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import trainlab
from trainlab.engine.compiled import Compiled, compiled
from trainlab.errors import TrainlabWarning

FAST = ["model.name=mlp", "model.widths=[16]", "training.epochs=2", "schedule.warmup_epochs=0"]


def test_off_is_the_model_itself():
    model = nn.Linear(3, 2)
    assert compiled(model, False) is model


def test_a_compiled_run_trains_what_the_eager_run_trains(tmp_path):
    """aot_eager traces forward and backward with dynamo and AOTAutograd (the inductor path
    less its C++ compile, 25 s on this machine): the same weights to float tolerance."""
    eager = trainlab.train(None, FAST, out=tmp_path / "eager", progress=False)
    fast = trainlab.train(
        None, [*FAST, "training.compile=aot_eager"], out=tmp_path / "c", progress=False
    )
    assert fast.summary["test_acc"] == pytest.approx(eager.summary["test_acc"], abs=0.01)
    a = trainlab.load_run(tmp_path / "eager").model.state_dict()
    b = trainlab.load_run(tmp_path / "c").model.state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)


def _refuses(graph, inputs):
    raise RuntimeError("this backend compiles nothing")


def test_a_model_that_cannot_compile_warns_once_and_trains_eagerly():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    wrapped = Compiled(model, backend=_refuses)
    x = torch.randn(5, 4)
    with pytest.warns(TrainlabWarning, match=r"^training.compile: torch.compile cannot compile"):
        out = wrapped(x)
    torch.testing.assert_close(out, model(x))
    out.sum().backward()
    assert model[0].weight.grad is not None  # the eager call trained the module itself
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        wrapped(x)
    assert len(list(wrapped.parameters())) == 4  # one copy of the weights


def test_a_misspelled_backend_is_refused_by_the_recipe():
    with pytest.raises(trainlab.TrainlabError, match="training.compile"):
        trainlab.resolve_recipe(None, ["training.compile=inductorr"])
