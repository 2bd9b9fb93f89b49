"""A search space: recipe key paths, each with a distribution, in a YAML file beside a recipe.

```yaml
optimizer.lr: loguniform(1e-4, 3e-2)        # log-uniform (lectures 002/004: lr and decay)
optimizer.weight_decay: loguniform(1e-5, 0.1)
model.activation: choice([relu, gelu])
training.batch_size: int(32, 128, log=true)
stages:                                     # optional: coarse-to-fine (see stages.py)
  coarse: {trials: 24, epochs: 3}
  fine: {trials: 8}
seeds: 3                                    # optional: retrain the best recipe on 3 seeds
```

Distributions: ``loguniform(lo, hi)``, ``uniform(lo, hi[, step=s])``, ``int(lo, hi[, log=true,
step=s])``, ``choice([a, b, ...])`` and ``grid([a, b, ...])`` (a choice that the grid sampler
walks exactly; the random and TPE samplers treat it as a choice). Arguments are read as YAML
flow values, so ``choice([relu, tanh])`` needs no quotes and ``1e-4`` is a number (PyYAML
alone would read it as text). Nested mappings are flattened into key paths
(``optimizer: {lr: ...}`` is ``optimizer.lr``). Nothing here is evaluated as code.

Every problem is found before anything runs, one line each: an unknown key path, a malformed
distribution, and a value the recipe's own schema refuses (each distribution's bounds and
midpoint, every choice, are applied to the recipe and validated).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainlab.errors import RecipeError
from trainlab.recipe import Recipe, resolve_recipe

__all__ = ["Distribution", "Space", "load_space", "narrowed", "parse_distribution", "RESERVED"]

#: top-level keys of a space file that are settings of the search, not recipe key paths
RESERVED = ("stages", "seeds", "metric")
KINDS = ("loguniform", "uniform", "int", "choice", "grid")
_CALL = re.compile(r"^\s*([a-z_]+)\s*\((.*)\)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Distribution:
    """One key's distribution. ``low``/``high`` for the numeric kinds, ``choices`` for the others.

    ``log``: sampled uniformly in log space (``loguniform``, ``int(..., log=true)``).
    """

    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    @property
    def numeric(self) -> bool:
        return self.kind in ("loguniform", "uniform", "int")

    def text(self) -> str:
        """The distribution as it is written in a space file (canonical form)."""
        if not self.numeric:
            return f"{self.kind}([{', '.join(_flow(c) for c in self.choices)}])"
        extra = ""
        if self.kind == "int" and self.log:
            extra += ", log=true"
        if self.step is not None:
            extra += f", step={self.step:g}"
        return f"{self.kind}({self.low:g}, {self.high:g}{extra})"

    def to_json(self) -> dict[str, Any]:
        """The form ``search.json`` records and ``trainlab compare`` draws."""
        if not self.numeric:
            return {"kind": self.kind, "choices": list(self.choices)}
        out: dict[str, Any] = {"kind": self.kind, "low": self.low, "high": self.high}
        if self.kind == "int":
            out["log"] = self.log
        if self.step is not None:
            out["step"] = self.step
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Distribution:
        kind = data["kind"]
        if kind in ("choice", "grid"):
            return cls(kind, choices=tuple(data["choices"]))
        log = kind == "loguniform" or bool(data.get("log"))
        return cls(kind, data["low"], data["high"], log, data.get("step"))

    def suggest(self, trial: Any, key: str) -> Any:
        """Draw this key's value through an Optuna trial (so samplers, pruners and the storage
        see it as an ordinary Optuna parameter named by the key path)."""
        if self.kind == "int":
            step = int(self.step or 1)
            return trial.suggest_int(key, int(self.low), int(self.high), step=step, log=self.log)
        if self.numeric:
            return trial.suggest_float(key, self.low, self.high, log=self.log, step=self.step)
        return trial.suggest_categorical(key, list(self.choices))

    def grid_points(self, n: int) -> list[Any]:
        """``n`` evenly spaced values (in log space when ``log``) for the grid sampler; every
        choice for a choice or a grid."""
        if not self.numeric:
            return list(self.choices)
        n = max(n, 1)
        lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        # the grid spans the range, both ends included (the lecture's grid layout)
        points = [lo + (hi - lo) * i / (n - 1) for i in range(n)] if n > 1 else [(lo + hi) / 2]
        values = [math.exp(p) if self.log else p for p in points]
        if self.step is not None:  # points Optuna can draw: on the step's lattice
            values = [self.low + self.step * round((v - self.low) / self.step) for v in values]
        if self.kind == "int":
            return sorted({int(round(v)) for v in values})
        return sorted({float(f"{v:.6g}") for v in values})

    def probe_values(self) -> list[Any]:
        """The values the recipe's schema is asked about before anything runs: both bounds and
        the midpoint of a range, every choice."""
        if not self.numeric:
            return list(self.choices)
        if self.kind == "int":
            return [self.low, (self.low + self.high) // 2, self.high]
        # the midpoint, and a value off any round number (a float range on an int key, say)
        lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        inner = [lo + (hi - lo) * f for f in (0.5, 0.37)]
        values = [math.exp(v) if self.log else v for v in inner]
        if self.step is not None:
            values = [self.low + self.step * round((v - self.low) / self.step) for v in values]
        return [self.low, *values, self.high]

    def contains(self, value: Any) -> bool:
        if not self.numeric:
            return value in self.choices
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Space:
    """The parameters of a search (key path -> distribution) and the file's search settings."""

    params: dict[str, Distribution]
    source: str = "space"
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: int = 0
    metric: str | None = None

    def suggest(self, trial: Any) -> dict[str, Any]:
        """One value per key, drawn through ``trial``, as recipe overrides."""
        return {key: dist.suggest(trial, key) for key, dist in self.params.items()}

    def to_text(self) -> dict[str, str]:
        return {key: dist.text() for key, dist in self.params.items()}

    def with_params(self, params: dict[str, Distribution]) -> Space:
        return Space(params, self.source, self.stages, self.seeds, self.metric)


def _number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` as text; a space means the number."""
    if isinstance(value, str):
        try:
            return int(value) if re.fullmatch(r"[+-]?\d+", value) else float(value)
        except ValueError:
            return value
    return value


def _flow(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _arguments(text: str) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments of ``name(...)``, read as a YAML flow sequence."""
    try:
        items = yaml.safe_load(f"[{text}]")
    except yaml.YAMLError:
        raise ValueError("its arguments are not valid YAML values") from None
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for item in items:
        if isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item)), str):
            key, value = next(iter(item.items()))
            kwargs[key] = _number(value)
        elif isinstance(item, str) and (match := re.fullmatch(r"(\w+)\s*=\s*(.+)", item)):
            value = yaml.safe_load(match.group(2))  # `log=true`, `step=0.1`
            kwargs[match.group(1)] = _number(value)
        else:
            args.append([_number(v) for v in item] if isinstance(item, list) else _number(item))
    return args, kwargs


def parse_distribution(text: Any) -> Distribution:
    """``loguniform(1e-4, 1e-2)`` -> Distribution; ValueError saying what was expected."""
    if not isinstance(text, str) or not (match := _CALL.match(text)):
        raise ValueError(
            f"{text!r}: expected a distribution: loguniform(lo, hi), uniform(lo, hi), "
            "int(lo, hi), choice([a, b]) or grid([a, b])"
        )
    kind, args_text = match.groups()
    if kind not in KINDS:
        raise ValueError(f"{text!r}: unknown distribution {kind!r}; valid: {', '.join(KINDS)}")
    args, kwargs = _arguments(args_text)
    if kind in ("choice", "grid"):
        return _categorical(text, kind, args, kwargs)
    return _numeric(text, kind, args, kwargs)


def _categorical(text: str, kind: str, args: list[Any], kwargs: dict[str, Any]) -> Distribution:
    values = args[0] if len(args) == 1 and isinstance(args[0], list) else args
    if kwargs or not values:
        raise ValueError(f"{text!r}: expected {kind}([a, b, ...]) with at least one value")
    if len({_flow(v) for v in values}) != len(values):
        raise ValueError(f"{text!r}: a value is listed twice")
    return Distribution(kind, choices=tuple(values))


def _numeric(text: str, kind: str, args: list[Any], kwargs: dict[str, Any]) -> Distribution:
    allowed = {"int": {"log", "step"}, "uniform": {"step"}, "loguniform": set()}[kind]
    unknown = set(kwargs) - allowed
    if unknown:
        raise ValueError(f"{text!r}: unknown argument {sorted(unknown)[0]!r} for {kind}")
    if len(args) != 2 or not all(_is_number(a) for a in args):
        raise ValueError(f"{text!r}: expected {kind}(lo, hi) with two numbers")
    low, high = args
    if kind == "int" and not all(isinstance(a, int) for a in args):
        raise ValueError(f"{text!r}: int(lo, hi) takes two whole numbers")
    if not low < high:
        raise ValueError(f"{text!r}: the low bound must be below the high bound")
    log = kind == "loguniform" or kwargs.get("log") is True
    if log and low <= 0:
        raise ValueError(f"{text!r}: a log scale needs a low bound above 0")
    step = kwargs.get("step")
    if step is not None and (not _is_number(step) or step <= 0 or (log and kind == "int")):
        raise ValueError(f"{text!r}: step must be a positive number (and not with log=true)")
    if step is not None and abs((high - low) / step - round((high - low) / step)) > 1e-9:
        raise ValueError(f"{text!r}: the range must be a whole number of steps from lo to hi")
    return Distribution(kind, low, high, log, step)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _flatten(raw: Mapping[str, Any], problems: list[str], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> dotted key paths (``optimizer: {lr: x}`` -> ``optimizer.lr: x``);
    a key given both ways is a problem, not a silent choice of one."""
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"{prefix}{key}"
        found = (
            _flatten(value, problems, f"{path}.") if isinstance(value, Mapping) else {path: value}
        )
        for k, v in found.items():
            if k in flat:
                problems.append(f"{k}: given twice (as a dotted key and nested); keep one")
            flat[k] = v
    return flat


def find_space(path: str | Path) -> Path:
    """The file ``--space`` means: an existing path, else a shipped space by its recipe's name
    (``mnist1d`` or ``mnist1d_space``: ``recipes/mnist1d_space.yaml``)."""
    from trainlab.recipe import SHIPPED_RECIPES, SPACE

    file = Path(path)
    if file.exists() or len(file.parts) != 1 or file.suffix in {".yaml", ".yml"}:
        return file
    shipped = SHIPPED_RECIPES / f"{file.name.removesuffix(SPACE)}{SPACE}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem.removesuffix(SPACE) for p in SHIPPED_RECIPES.glob(f"*{SPACE}.yaml"))
    raise RecipeError(
        f"{path}: no such search space file and no shipped one of that name; shipped: "
        f"{', '.join(names)} (or give the path of a YAML file)"
    )


def load_space(path: str | Path, recipe: Recipe) -> Space:
    """Read and check a space file against ``recipe``; every problem is one line of the error."""
    file = find_space(path)
    raw = _read_yaml(file)
    problems: list[str] = []
    params: dict[str, Distribution] = {}
    settings = {key: raw.pop(key) for key in RESERVED if key in raw}
    for key, value in _flatten(raw, problems).items():
        try:
            params[key] = parse_distribution(value)
        except ValueError as exc:
            problems.append(f"{key}: {exc}")
    if not params and not problems:
        problems.append("no parameters: expected KEY.PATH: distribution entries")
    problems += _recipe_problems(recipe, params)
    stages, seeds, metric = _settings(settings, problems)
    if problems:
        raise RecipeError.of(str(file), problems)
    return Space(params, str(file), stages, seeds, metric)


def _read_yaml(file: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"{file}: search space file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{file}: cannot read the search space ({type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise RecipeError(f"{file}:{where} invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{file}: a search space is a mapping of KEY.PATH: distribution")
    return raw


def _recipe_problems(recipe: Recipe, params: Mapping[str, Distribution]) -> list[str]:
    """Each key path with each probe value applied alone to the recipe: what the schema refuses,
    one line per key (its first refused value)."""
    problems: list[str] = []
    for key, dist in params.items():
        for value in dist.probe_values():
            try:
                resolve_recipe(recipe, {key: value})
            except RecipeError as exc:
                reason = "; ".join(exc.problems)
                if "unknown key" in reason or "has no parameter" in reason:  # the path itself
                    problems.append(reason)
                else:
                    problems.append(f"{key}: {dist.text()}: the recipe refuses {value!r}: {reason}")
                break
    return problems


def _settings(settings: dict[str, Any], problems: list[str]) -> tuple[dict, int, str | None]:
    """``stages``, ``seeds`` and ``metric`` of a space file (stages are checked in stages.py)."""
    stages = settings.get("stages") or {}
    if not isinstance(stages, Mapping) or not all(isinstance(v, Mapping) for v in stages.values()):
        problems.append("stages: expected NAME: {trials: N, epochs: E} entries")
        stages = {}
    seeds = settings.get("seeds", 0)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 0:
        problems.append(f"seeds: expected a whole number of seeds (0: none), got {seeds!r}")
        seeds = 0
    metric = settings.get("metric")
    if metric is not None and metric not in ("val_acc", "val_loss"):
        problems.append(f"metric: expected val_acc or val_loss, got {metric!r}")
        metric = None
    return dict(stages), seeds, metric


def narrowed(space: Space, best: Sequence[Mapping[str, Any]], margin: float) -> Space:
    """The fine stage's space: each range narrowed around the values of the ``best`` trials.

    The rule (documented in the README): a numeric range becomes the span of the best trials'
    values, in log space for a log-uniform one, widened on each side by ``margin`` times that
    span (at least ``margin`` times a tenth of the original span, so trials that all agree still
    leave room to look around), and clipped to the original range. Bounds are rounded outwards
    (4 significant digits; onto the step's lattice when there is a step; whole numbers for
    ``int``), so the best trials' values stay inside. A choice or grid keeps the values that
    the best trials used.
    """
    params: dict[str, Distribution] = {}
    for key, dist in space.params.items():
        values = [trial[key] for trial in best if key in trial]
        params[key] = _narrow(dist, values, margin) if values else dist
    return space.with_params(params)


def _narrow(dist: Distribution, values: list[Any], margin: float) -> Distribution:
    if not dist.numeric:
        kept = tuple(c for c in dist.choices if c in values)
        return Distribution(dist.kind, choices=kept or dist.choices)
    to, back = (math.log, math.exp) if dist.log else (float, float)
    lo, hi = to(dist.low), to(dist.high)
    top_lo, top_hi = to(min(values)), to(max(values))
    pad = margin * max(top_hi - top_lo, (hi - lo) / 10)
    low, high = back(max(lo, top_lo - pad)), back(min(hi, top_hi + pad))
    if dist.step is not None:  # outwards onto the step's lattice: every value stays drawable
        low = dist.low + dist.step * math.floor((low - dist.low) / dist.step + 1e-9)
        high = dist.low + dist.step * math.ceil((high - dist.low) / dist.step - 1e-9)
    if dist.kind == "int":
        low, high = math.floor(low), math.ceil(high)
        if low >= high:
            high = min(int(dist.high), low + int(dist.step or 1))
            low = high - int(dist.step or 1)
    elif dist.step is None:  # 4 significant digits, rounded outwards
        low, high = _round(low, math.floor), _round(high, math.ceil)
    return Distribution(dist.kind, max(dist.low, low), min(dist.high, high), dist.log, dist.step)


def _round(value: float, direction: Any) -> float:
    """``value`` to 4 significant digits, down (``math.floor``) or up (``math.ceil``)."""
    if value == 0:
        return 0.0
    scale = 10 ** (math.floor(math.log10(abs(value))) - 3)
    return float(f"{direction(value / scale) * scale:.4g}")
