"""Per-model queries of :class:`~blox_env.datasets.store.core.BloxStore`, mirroring the original API.

``val_acc(arch, epoch=None, best=True, seed=None)`` and friends: epochs count
from 1, ``seed=None`` picks one of the run's seeds at random (from ``rng`` or
the store's generator), ``seed="mean"`` averages over seeds. Each query is a
few dictionary lookups and one array index once the model's chunk is cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.datasets.store.encoding import best_mode, quiet_nan
from blox_env.datasets.store.integrity import corrupt, guard
from blox_env.datasets.store.schema import CURVE_METRICS, STATIC_METRICS
from blox_env.errors import InvalidArgumentError
from blox_env.space import parse_arch

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = ["QueryMixin"]

SeedArg = int | str | None


class QueryMixin:
    """Original-style queries (a mixin of BloxStore)."""

    def _curve(self: BloxStore, metric: str, arch: Any, epoch: int | None, best: bool, seed: SeedArg,
               rng: np.random.Generator | None, run: str | None) -> float:
        info = self.run_info(run)
        path = f"{self.run_path(info.name)}/{metric}"
        if metric not in info.metrics:
            raise InvalidArgumentError(f"run {info.name!r} has no {metric!r}: it has {', '.join(info.metrics)}")
        row = self._row(arch)
        e = self._epoch(info, epoch)
        pos = self._seed_positions(info, seed, 1, rng)
        if isinstance(pos, str):
            return float(self.get(metric, np.array([self.index[row]]), seed="mean", epoch=e, best=best, run=run)[0])
        arr, enc, _ = self._array(path)
        size = arr.chunks[1]
        if arr.ndim == 2:
            value = enc.decode_one(self._block(path, pos, row // size)[row % size])
            return value * e / info.epochs if metric == "train_time_s" else value
        blk = self._block(path, pos, row // size, best_mode(metric) if best else None)
        return enc.decode_one(blk[row % size, e - 1])

    def val_acc(self: BloxStore, arch: Any, epoch: int | None = None, best: bool = True, seed: SeedArg = None, *,
                rng: np.random.Generator | None = None, run: str | None = None) -> float:
        """Validation top-1 (%) at ``epoch`` (1-based; default last), best-so-far by default."""
        return self._curve("val_top1", arch, epoch, best, seed, rng, run)

    def test_acc(self: BloxStore, arch: Any, seed: SeedArg = None, *, rng: np.random.Generator | None = None,
                 run: str | None = None) -> float:
        """Test top-1 (%) of the final model."""
        return self._curve("test_top1", arch, None, False, seed, rng, run)

    def train_time(self: BloxStore, arch: Any, epoch: int | None = None, seed: SeedArg = None, *,
                   rng: np.random.Generator | None = None, run: str | None = None) -> float:
        """Training time in seconds, scaled linearly to ``epoch`` epochs."""
        return self._curve("train_time_s", arch, epoch, False, seed, rng, run)

    def _epoch_metric(metric: str, doc: str):  # noqa: N805 - a factory used in the class body
        def query(self: BloxStore, arch: Any, epoch: int | None = None, seed: SeedArg = None, *,
                  best: bool = False, rng: np.random.Generator | None = None, run: str | None = None) -> float:
            return self._curve(metric, arch, epoch, best, seed, rng, run)

        query.__doc__ = f"{doc} at ``epoch`` (1-based; default last); ``best=True`` for the best so far."
        return query

    def _final_metric(metric: str, doc: str):  # noqa: N805
        def query(self: BloxStore, arch: Any, seed: SeedArg = None, *, rng: np.random.Generator | None = None,
                  run: str | None = None) -> float:
            return self._curve(metric, arch, None, False, seed, rng, run)

        query.__doc__ = f"{doc} of the final model."
        return query

    train_acc = _epoch_metric("train_top1", "Training top-1 (%)")
    train_loss = _epoch_metric("train_loss", "Training loss")
    train_top5 = _epoch_metric("train_top5", "Training top-5 (%)")
    val_loss = _epoch_metric("val_loss", "Validation loss")
    val_top5 = _epoch_metric("val_top5", "Validation top-5 (%)")
    test_loss = _final_metric("test_loss", "Test loss")
    test_top5 = _final_metric("test_top5", "Test top-5 (%)")
    del _epoch_metric, _final_metric

    def params(self: BloxStore, arch: Any) -> int:
        """Parameter count."""
        return self._static_int("static/params", arch)

    def flops(self: BloxStore, arch: Any) -> int:
        """The ``flops`` column: the official release's field (ptflops) in imported stores, our conv + linear
        MACs in stores this project builds (``static/flops``'s ``counting`` attribute says which)."""
        return self._static_int("static/flops", arch)

    def _static_int(self: BloxStore, path: str, arch: Any) -> int:
        value = self._static(path, arch)
        if np.isnan(value):  # static costs are written for every row: missing means a lost chunk
            raise corrupt(self.location, f"array {path!r}", f"no value for model {parse_arch(arch).index}, "
                          "its chunk is missing")
        return int(value)

    def _static(self: BloxStore, path: str, arch: Any) -> float:
        if path not in self.metric_paths():
            raise InvalidArgumentError(f"store {self.name!r} has no {path!r}")
        row = self._row(arch)
        arr, enc, _ = self._array(path)
        return enc.decode_one(self._block(path, 0, row // arr.chunks[0])[row % arr.chunks[0]])

    def latency(self: BloxStore, arch: Any, devices: str | Sequence[str] | None = None) -> float | dict[str, float]:
        """Latency (seconds) on one device (a float) or several (a dict; default all)."""
        if isinstance(devices, str):
            if devices not in self.latency_devices:
                raise InvalidArgumentError(f"unknown device {devices!r}: allowed {', '.join(self.latency_devices)}")
            return self._static(f"latency/{devices}", arch)
        names = self.latency_devices if devices is None else list(devices)
        return {d: float(self.latency(arch, d)) for d in names}

    def env_info(self: BloxStore, arch: Any, seed: SeedArg = None) -> dict[str, str]:
        """Software/hardware environment strings recorded when the model was trained."""
        row = self._row(arch)
        out = {}
        for col in self._children("env", arrays=True):
            arr, _, _ = self._array(f"env/{col}")
            with guard(self.location, f"metadata of array 'env/{col}'"):
                cats = list(arr.attrs["categories"])
                seeds = list(arr.attrs["seeds"])
            pos = 0 if seed in (None, "mean") else seeds.index(seed) if seed in seeds else None
            if pos is None:
                raise InvalidArgumentError(f"seed must be one of {seeds}, got {seed!r}")
            code = int(self._block(f"env/{col}", pos, row // arr.chunks[1])[row % arr.chunks[1]])
            out[col] = cats[code] if 0 <= code < len(cats) else ""
        return out

    def curve(self: BloxStore, metric: str, arch: Any, seed: SeedArg = None, *, rng: np.random.Generator | None = None,
              run: str | None = None) -> np.ndarray:
        """A per-epoch metric's whole curve (epoch 1 first) as float64."""
        info = self.run_info(run)
        if metric not in info.metrics or metric not in CURVE_METRICS:
            curves = [m for m in info.metrics if m in CURVE_METRICS]
            raise InvalidArgumentError(f"{metric!r} is not a per-epoch metric of run {info.name!r}: allowed {curves}")
        pos = self._seed_positions(info, seed, 1, rng)
        path = f"{self.run_path(info.name)}/{metric}"
        arr, enc, _ = self._array(path)
        row = self._row(arch)
        if isinstance(pos, str):
            with quiet_nan():
                return np.nanmean([enc.decode(self._block(path, p, row // arr.chunks[1])[row % arr.chunks[1]])
                                   for p in range(len(info.seeds))], axis=0)
        return enc.decode(self._block(path, pos, row // arr.chunks[1])[row % arr.chunks[1]])

    def full_info(self: BloxStore, arch: Any, seed: SeedArg = None, *, rng: np.random.Generator | None = None,
                  run: str | None = None) -> dict[str, Any]:
        """Everything the store knows about one model, as a dict (curves as lists)."""
        a = parse_arch(arch)
        self._row(a)
        info: dict[str, Any] = {"index": a.index, "hash": a.hash, "blocks": list(a.blocks), "arch_vec": a.vec}
        for m in STATIC_METRICS:
            if f"static/{m}" in self.metric_paths():
                value = self._static(f"static/{m}", a)
                info[m] = None if np.isnan(value) else int(value)
        if self.latency_devices:
            info["latency"] = self.latency(a)
        if self.runs:
            r = self.run_info(run)
            pos = self._seed_positions(r, seed, 1, rng)
            chosen: SeedArg = "mean" if isinstance(pos, str) else r.seeds[pos]
            info.update({"run": r.name, "seed": chosen, "epochs": r.epochs})
            for m in r.metrics:
                if m in CURVE_METRICS:
                    info[m] = self.curve(m, a, chosen, run=r.name).tolist()
                else:
                    info[m] = float(self.get(m, [a], seed=chosen, run=r.name)[0])
            if "val_top1" in r.metrics:
                info["val_top1_best"] = self.val_acc(a, seed=chosen, run=r.name)
            if chosen != "mean" and self._children("env", arrays=True):
                info["env"] = self.env_info(a, chosen)
        return info

