"""Model and dataset factories declare the recipe keys they read, with the schema's defaults.

A factory's keyword parameters with a default are the keys of its recipe section that it reads
(``create_model`` and ``load_splits`` pass it exactly those); ``trainlab list`` shows them. The
defaults are stated by the schema (``ModelConfig``, ``DataConfig``); the factories repeat them,
since nn and data cannot import the schema (it imports every component to check names), and
these tests keep the two from drifting apart.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter

import trainlab.catalog  # noqa: F401  (registers every component: data.formats' readers too)
from tests.conftest import last_json, run_cli
from trainlab.api import list_components
from trainlab.data.datasets import DATASETS
from trainlab.nn.models import MODELS
from trainlab.recipe import DataConfig, ModelConfig
from trainlab.registry import Registry

SECTIONS: list[tuple[Registry, type[BaseModel]]] = [(MODELS, ModelConfig), (DATASETS, DataConfig)]
ENTRIES = [
    pytest.param(registry, section, entry.name, id=f"{registry.kind}-{entry.name}")
    for registry, section in SECTIONS
    for entry in registry
]

# what each built-in reads from its section (the architecture's shared choices, activation,
# norm, dropout, kernel_size, ..., are Layers.from_config's, and the splits load_splits')
READS = {
    ("model", "mlp"): {"widths"},
    ("model", "convnet"): {"channels", "depth", "pool", "pool_ratio", "widths"},
    ("model", "resnet"): {"channels", "depth", "widths"},
    ("dataset", "digits"): set(),
    ("dataset", "mnist1d"): set(),
    ("dataset", "spiral"): set(),
    ("dataset", "npz"): {"path"},
    ("dataset", "npy"): {"path", "labels_path", "test_path"},
    ("dataset", "csv"): {"path", "test_path", "label_column"},
    ("dataset", "idx"): {"path"},
    ("dataset", "cifar10"): {"path"},
    ("dataset", "imagefolder"): {
        "path",
        "test_path",
        "image_size",
        "cache_dir",
        "on_corrupt",
        "max_image_pixels",
        "max_resident_mb",
    },
}


def _plain(value: Any) -> Any:
    """Signatures hold sequences as tuples (immutable defaults), the schema as lists."""
    return list(value) if isinstance(value, tuple) else value


def _schema_default(section: type[BaseModel], key: str) -> Any:
    return section.model_fields[key].get_default(call_default_factory=True)


def test_every_builtin_is_covered():
    listed = {(registry.kind, entry.name) for registry, _ in SECTIONS for entry in registry}
    assert set(READS) <= listed


@pytest.mark.parametrize(("registry", "section", "name"), ENTRIES)
def test_factory_parameters_are_section_keys_with_the_schema_defaults(
    registry: Registry, section: type[BaseModel], name: str
):
    entry = registry.get(name)
    params, types = entry.params(), entry.param_types()
    if (registry.kind, name) in READS:
        assert set(params) == READS[registry.kind, name]
    for key, default in params.items():
        assert key in section.model_fields, f"{name}.{key} is not a {section.__name__} key"
        expected = _schema_default(section, key)
        assert _plain(default) == expected, (
            f"{registry.kind} {name!r}: default {key}={default!r} differs from "
            f"{section.__name__}.{key}={expected!r} (the schema's is the recipe's default)"
        )
        assert key in types, f"{name}.{key} has no type annotation"
        assert _plain(TypeAdapter(types[key]).validate_python(expected)) == expected


def test_list_shows_each_architectures_and_readers_parameters():
    models = list_components("model")["model"]
    assert models["mlp"]["params"] == {"widths": (128,)}
    assert set(models["convnet"]["params"]) == READS["model", "convnet"]
    datasets = list_components("dataset")["dataset"]
    assert datasets["csv"]["params"] == {"path": None, "test_path": None, "label_column": "label"}
    assert datasets["digits"]["params"] == {}
    table = run_cli("list", "model")
    assert table.returncode == 0, table.stderr
    assert "widths=[128]" in table.stdout and "pool='max'" in table.stdout
    done = run_cli("list", "model", "--json")
    assert done.returncode == 0, done.stderr
    assert last_json(done.stdout)["model"]["resnet"]["params"] == {
        "channels": [32, 64],
        "depth": 2,
        "widths": [128],
    }
