"""Optuna's parts, chosen by name: the storage (with heartbeats), samplers and pruners.

Kept apart from the study loop so each choice is one small function with its reason:
- storage: a SQLite file in the study folder by default; ``postgresql://`` for workers on many
  machines. Heartbeats are always on, so a worker that dies mid-trial leaves no trial RUNNING:
  the next worker to look fails it after the grace period (and, with ``retries``, queues it
  again: Optuna's RetryHeartbeatStaleTrialCallback).
- ``random``: each value is drawn from (seed, trial number, key), not from one stream, so a
  trial's values do not depend on which worker ran it or in what order trials finished: one
  worker and three workers sample the same configurations.
- ``grid``: each continuous range cut into evenly spaced points (log-spaced when log-uniform),
  as many per key as the trial budget allows; ``choice``/``grid`` values as they are.
- ``tpe``: Optuna's TPE with the constant liar (trials running elsewhere count as bad guesses,
  so parallel workers spread out). On a shared (server) storage the grid and TPE samplers of
  each worker draw from the seed mixed with its host and pid, so the workers do not all start
  with the same guesses; such a search is not reproducible draw for draw, the random one is.
- pruners: ``median`` (Optuna's MedianPruner: stop a trial below the median of earlier trials at
  the same epoch, after 5 trials and from epoch 2), ``asha`` (asynchronous successive halving,
  reduction factor 3, from epoch 1), ``hyperband``, ``none``.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np
import optuna

from trainlab.errors import RecipeError, TrainlabError
from trainlab.tuning.space import Space

__all__ = [
    "open_storage",
    "shown_url",
    "make_sampler",
    "make_pruner",
    "grid_points",
    "grid_size",
    "TrialSeededRandomSampler",
    "SAMPLERS",
    "PRUNERS",
]

SAMPLERS = ("random", "grid", "tpe")
PRUNERS = ("none", "median", "asha", "hyperband")


def _with_driver(url: str) -> str:
    """A bare ``postgresql://`` URL with the driver that is installed: SQLAlchemy 2.1 reads the
    bare scheme as psycopg 3, while ``trainlab[postgres]`` brings psycopg2."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def open_storage(url: str, heartbeat: int, retries: int) -> Any:
    """An RDBStorage with heartbeats on; a missing driver or an unreachable server is one line."""
    url = _with_driver(url)
    stale = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=retries) if retries else None
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}  # a second local process waits, not fails
    elif url.startswith("postgresql"):
        kwargs["pool_pre_ping"] = True  # a connection dropped while a trial trained is renewed
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=kwargs, heartbeat_interval=heartbeat,
            grace_period=2 * heartbeat, heartbeat_stale_trial_callback=stale,
        )  # fmt: skip
    except ImportError:
        driver = "pip install 'trainlab[postgres]' (psycopg2)" if "postgres" in url else "a driver"
        raise TrainlabError(f"--storage {shown_url(url)}: no database driver; {driver}") from None
    except Exception as exc:  # noqa: BLE001  (sqlalchemy's many connection errors)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = f"--storage {shown_url(url)}"
        raise TrainlabError(f"{where}: cannot open the study storage: {reason}") from None


def shown_url(url: str) -> str:
    """The URL without its password."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, user = head.partition("//")
    return f"{scheme}//{user.split(':', 1)[0]}:***@{tail}"


class TrialSeededRandomSampler(optuna.samplers.RandomSampler):
    """Random search whose draws depend only on (seed, trial number, key).

    Optuna's RandomSampler (its relative-sampling no-ops) with ``sample_independent`` drawing
    from a generator seeded by the trial, so parallel workers neither repeat one another (a
    shared seed would) nor make the search irreproducible (no seed would).
    """

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.seed = seed

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
        rng = np.random.default_rng([self.seed, trial.number, zlib.crc32(name.encode())])
        return _draw(rng, dist)


def _draw(rng: np.random.Generator, dist: Any) -> Any:
    """One value of an Optuna distribution (float, int or categorical)."""
    d = optuna.distributions
    if isinstance(dist, d.CategoricalDistribution):
        return dist.choices[int(rng.integers(len(dist.choices)))]
    low, high = dist.low, dist.high
    if isinstance(dist, d.IntDistribution):
        if dist.log:
            value = math.exp(rng.uniform(math.log(low - 0.5), math.log(high + 0.5)))
            return int(min(max(round(value), low), high))
        return int(low + dist.step * rng.integers((high - low) // dist.step + 1))
    if dist.log:
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    if dist.step is not None:
        return float(low + dist.step * rng.integers(round((high - low) / dist.step) + 1))
    return float(rng.uniform(low, high))


def grid_points(space: Space, trials: int) -> dict[str, list[Any]]:
    """The grid for ``trials`` trials: every choice, and as many evenly spaced points per
    continuous key as make the grid no larger than ``trials`` (at least 2 each)."""
    fixed = math.prod(len(d.choices) for d in space.params.values() if not d.numeric)
    ranges = [k for k, d in space.params.items() if d.numeric]
    per = max(2, math.floor((trials / max(fixed, 1)) ** (1 / len(ranges)) + 1e-9)) if ranges else 0
    return {key: dist.grid_points(per) for key, dist in space.params.items()}


def grid_size(space: Space, trials: int) -> int:
    return math.prod(len(v) for v in grid_points(space, trials).values())


def make_sampler(name: str, space: Space, trials: int, seed: int, shared: bool = False) -> Any:
    """The named sampler. ``shared``: other workers may sample the same study (a server
    storage); the grid and TPE samplers then draw from a seed of this worker's own, or every
    worker would start with the same configurations (``random`` is seeded per trial instead)."""
    if name == "random":
        return TrialSeededRandomSampler(seed)
    own = worker_seed(seed) if shared else seed
    if name == "grid":
        return optuna.samplers.GridSampler(grid_points(space, trials), seed=own)
    if name == "tpe":
        startup = min(10, max(3, trials // 3))
        return optuna.samplers.TPESampler(seed=own, constant_liar=True, n_startup_trials=startup)
    raise RecipeError(f"--sampler {name!r}: expected one of {', '.join(SAMPLERS)}")


def worker_seed(seed: int) -> int:
    """``seed`` mixed with this process's host and pid: distinct per worker."""
    import os
    import socket

    return zlib.crc32(f"{seed}:{socket.gethostname()}:{os.getpid()}".encode())


def make_pruner(name: str, epochs: int) -> Any:
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max(epochs, 1), reduction_factor=3
        )
    raise RecipeError(f"--pruner {name!r}: expected one of {', '.join(PRUNERS)}")
