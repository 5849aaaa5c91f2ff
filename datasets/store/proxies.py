"""Zero-cost proxy columns of a :class:`~blox_env.datasets.store.core.BloxStore` (the ``proxies/`` group).

Layout::

    proxies/<name>[S, N]          score of proxy <name> per initialisation seed and model (NaN = missing)
    proxies/time_s/<name>[S, N]   seconds that proxy took for that seed and model

The group's attributes hold ``init_seeds`` (the S labels) and the provenance (data, batch size, data seed,
conventions, versions). Queries name the columns ``proxy:<name>`` (``store.get("proxy:synflow",
init_seed=0)``), so the ``params``/``flops`` proxies never collide with ``static/params``/``static/flops``
and the initialisation seed (``init_seed``) is never the training seed (``seed``).

A row of one seed counts as done when every proxy's time is recorded (the time is written after the
values, and is recorded even when a proxy's value is NaN), so a batch torn by a crash is redone, never
half-used: :meth:`ProxyMixin.proxy_done`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.datasets.store.encoding import Encoding, quiet_nan
from blox_env.errors import InvalidArgumentError, StoreError

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = ["PROXY_GROUP", "PROXY_PREFIX", "ProxyMixin"]

PROXY_GROUP = "proxies"
PROXY_PREFIX = "proxy:"
TIME_GROUP = f"{PROXY_GROUP}/time_s"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_FLOAT = Encoding("raw", "float64")


class ProxyMixin:
    """Proxy columns of BloxStore (a mixin; writes need a store opened with mode 'w' or 'a')."""

    # ------------------------------------------------------------------ reading
    def proxy_names(self: BloxStore) -> list[str]:
        """The proxies this store holds (sorted)."""
        return self._children(PROXY_GROUP, arrays=True)

    def proxy_attrs(self: BloxStore) -> dict[str, Any]:
        """The ``proxies/`` group's attributes (init_seeds, provenance); empty when there is none."""
        node = self._node(PROXY_GROUP)
        return {} if node is None or hasattr(node, "chunks") else dict(node.attrs)

    def proxy_init_seeds(self: BloxStore) -> tuple[int, ...]:
        """The initialisation seeds, in the order of the arrays' first axis."""
        return tuple(int(s) for s in self.proxy_attrs().get("init_seeds", ()))

    def _proxy_path(self: BloxStore, name: str, *, time: bool = False) -> str:
        if name not in self.proxy_names():
            raise InvalidArgumentError(f"unknown proxy {name!r}: this store has "
                                       f"{', '.join(self.proxy_names()) or 'no proxies (blox build-proxies)'}")
        return f"{TIME_GROUP if time else PROXY_GROUP}/{name}"

    def _init_position(self: BloxStore, init_seed: int | str) -> int | str:
        seeds = self.proxy_init_seeds()
        if isinstance(init_seed, str) and init_seed == "mean":
            return "mean"
        if isinstance(init_seed, int | np.integer) and not isinstance(init_seed, bool) and int(init_seed) in seeds:
            return seeds.index(int(init_seed))
        raise InvalidArgumentError(f"init_seed must be one of {list(seeds)} or 'mean', got {init_seed!r}")

    def get_proxy(self: BloxStore, name: str, archs: Any = None, *, init_seed: int | str = "mean",
                  time: bool = False) -> np.ndarray:
        """Proxy ``name`` (or with ``time=True`` its seconds) of many models as float64, NaN where missing;
        ``init_seed``: one of :meth:`proxy_init_seeds` or ``"mean"`` (over the seeds, NaN-aware)."""
        path = self._proxy_path(name, time=time)
        rows = np.arange(len(self)) if archs is None else self.rows(archs)
        pos = self._init_position(init_seed)
        _, enc, _ = self._array(path)
        if pos == "mean":
            with quiet_nan():
                return np.nanmean(np.stack([enc.decode(self._gather(path, p, rows))
                                            for p in range(len(self.proxy_init_seeds()))]), axis=0)
        return enc.decode(self._gather(path, int(pos), rows))

    def proxy_done(self: BloxStore, names: Sequence[str] | None = None) -> np.ndarray:
        """``[S, N]`` bool: rows of each seed whose proxies (``names``, default all held) are all recorded."""
        names = list(names) if names is not None else self.proxy_names()
        done = np.ones((len(self.proxy_init_seeds()), len(self)), dtype=bool)
        rows = np.arange(len(self))
        for name in names:
            path = self._proxy_path(name, time=True)
            _, enc, _ = self._array(path)
            for p in range(done.shape[0]):
                done[p] &= np.isfinite(enc.decode(self._gather(path, p, rows)))
        return done

    def _proxy_query(self: BloxStore, metric: str, archs: Any, *, init_seed: int | str | None,
                     seed: Any) -> np.ndarray:
        """``get("proxy:<name>")`` (the hook in :meth:`BloxStore.get`)."""
        if seed is not None:
            raise InvalidArgumentError(f"{metric} depends on the initialisation seed, not a training seed: "
                                       f"pass init_seed= (one of {list(self.proxy_init_seeds())} or 'mean')")
        return self.get_proxy(metric[len(PROXY_PREFIX):], archs, init_seed="mean" if init_seed is None else init_seed)

    # ------------------------------------------------------------------ writing
    def create_proxies(self: BloxStore, names: Sequence[str], *, init_seeds: Sequence[int],
                       attrs: dict[str, Any] | None = None) -> list[str]:
        """Allocate all-missing ``proxies/<name>`` and ``proxies/time_s/<name>`` arrays for the names not yet
        held, and record ``init_seeds`` and ``attrs``. A store that already holds proxies must be extended with
        the same init seeds. Returns the names allocated now."""
        self.check_writable()
        seeds = [int(s) for s in init_seeds]
        if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise InvalidArgumentError(f"init_seeds must be distinct integers >= 0, got {list(init_seeds)}")
        bad = [n for n in names if not isinstance(n, str) or not _NAME.match(n) or n == "time_s"]
        if bad or not names:
            raise InvalidArgumentError(f"proxy names must be lowercase identifiers (not 'time_s'), got {bad or names}")
        held = self.proxy_init_seeds()
        if self.proxy_names() and list(held) != seeds:
            raise StoreError(f"store {self.location} holds proxies for init seeds {list(held)}, not {seeds}: "
                             "build into another store, or use the same seeds")
        grp = self._group.require_group(PROXY_GROUP)
        self._group.require_group(TIME_GROUP)
        grp.attrs.update({**(attrs or {}), "init_seeds": seeds})
        self._nodes.pop(PROXY_GROUP, None)
        self._listings.clear()
        new = [n for n in names if n not in self.proxy_names()]
        shape = (len(seeds), len(self))
        for name in new:
            self._new_array(f"{PROXY_GROUP}/{name}", None, shape=shape, model_axis=1, encoding=_FLOAT)
            self._new_array(f"{TIME_GROUP}/{name}", None, shape=shape, model_axis=1, encoding=_FLOAT,
                            attrs={"unit": "s"})
        self._listings.clear()
        return new

    def _write_proxy_rows(self: BloxStore, path: str, pos: int, rows: np.ndarray, values: np.ndarray) -> None:
        arr, enc, _ = self._array(path)
        self._write_array_rows(path, arr, pos, np.asarray(rows), enc.pack(values))

    def write_proxies(self: BloxStore, archs: Any, *, init_seed: int, values: dict[str, Sequence[float]],
                      seconds: dict[str, Sequence[float]]) -> None:
        """Record some models' proxies of one init seed: every value array first, then every time array (so a
        write cut short leaves those rows not done, see :meth:`proxy_done`)."""
        self.check_writable()
        pos = self._init_position(init_seed)
        rows = np.asarray(self.rows(archs), dtype=np.int64)
        if set(values) != set(seconds):
            raise InvalidArgumentError("write_proxies needs the same proxies in values and seconds")
        packed = {}
        for name in values:
            v = np.asarray(values[name], dtype=np.float64)
            t = np.asarray(seconds[name], dtype=np.float64)
            if v.shape != rows.shape or t.shape != rows.shape:
                raise InvalidArgumentError(f"proxy {name!r} needs one value and one time per model ({len(rows)})")
            if not np.all(np.isfinite(t)) or np.any(t < 0):
                raise InvalidArgumentError(f"proxy {name!r}: times must be finite seconds >= 0")
            packed[name] = (self._proxy_path(name), self._proxy_path(name, time=True), v, t)
        for path, _, v, _ in packed.values():
            self._write_proxy_rows(path, int(pos), rows, v)
        for _, tpath, _, t in packed.values():
            self._write_proxy_rows(tpath, int(pos), rows, t)
