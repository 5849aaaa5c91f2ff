"""``ProxyFidelity``: a store's zero-cost proxy table as the cheapest fidelity of the tabular reward.

A proxy evaluation (fidelity :data:`~blox_env.runs.budget.PROXY_FIDELITY`, 0) scores an untrained model by
one proxy (``proxies/<name>`` of the store, higher is better) at one initialisation seed, and costs the
seconds the proxy took for that model and seed (``proxies/time_s/<name>``), converted to epochs or evaluations
against the model's recorded normal training time (:func:`~blox_env.runs.budget.proxy_cost`). Its metrics are
``proxy:<name>`` (the score), ``proxy_time_s`` (what it took), ``normal_train_time_s`` (the model's seed-mean
normal training time: the reference of the epochs and evaluations charges, not spent) and the store's static
columns. The initialisation seed follows
``init_seed``: ``"random"`` (one of the store's proxy seeds per evaluation, from the caller's generator),
``"mean"`` (the mean over seeds, costing the mean time) or a fixed seed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError
from blox_env.rewards.base import seed_positions
from blox_env.runs.budget import cost_is_missing, proxy_cost

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = ["INIT_SEED_MODES", "ProxyFidelity"]

INIT_SEED_MODES = ("random", "mean")


class ProxyFidelity:
    """One proxy of a store, its per-seed scores and seconds, and the normal training time it is charged against.

    ``train_time_s`` is the seed-mean recorded training time of each row at ``epochs`` (the full protocol), the
    reference of the epochs and evaluations units.
    """

    def __init__(self, store: BloxStore, name: Any, *, init_seed: Any = "random", train_time_s: np.ndarray | None,
                 epochs: int) -> None:
        if not isinstance(name, str):
            raise InvalidArgumentTypeError(f"proxy must be the name of one of the store's zero-cost proxies (a str), "
                                           f"got {name!r}")
        held = store.proxy_names()
        if name not in held:
            what = ", ".join(held) if held else "none (compute them with `blox build-proxies`)"
            raise InvalidArgumentError(f"unknown proxy {name!r}: store {store.name!r} holds {what}")
        seeds = store.proxy_init_seeds()
        if not (isinstance(init_seed, str) and init_seed in INIT_SEED_MODES) and not (
                isinstance(init_seed, (int, np.integer)) and not isinstance(init_seed, bool) and init_seed in seeds):
            raise InvalidArgumentError(f"proxy_init_seed must be 'random', 'mean' or one of the store's proxy "
                                       f"initialisation seeds {list(seeds)}, got {init_seed!r}")
        self.name, self.metric, self.seeds, self.epochs = name, f"proxy:{name}", seeds, int(epochs)
        self.init_seed: int | str = init_seed if isinstance(init_seed, str) else int(init_seed)
        self.values = np.stack([store.get_proxy(name, init_seed=s) for s in seeds])  # [S, N]
        self.seconds = np.stack([store.get_proxy(name, init_seed=s, time=True) for s in seeds])
        n = self.values.shape[1]
        self.train_time_s = np.full(n, np.nan) if train_time_s is None else np.asarray(train_time_s, np.float64)

    def positions(self, n: int, rng: np.random.Generator | None) -> np.ndarray | None:
        """Seed positions of ``n`` evaluations (None: the mean over seeds)."""
        return seed_positions(self.init_seed, self.seeds, n, rng)

    def seed_label(self, pos: int | None) -> int | str:
        return "mean" if pos is None else self.seeds[int(pos)]

    def batch(self, rows: np.ndarray, pos: np.ndarray | None) -> dict[str, np.ndarray]:
        """The proxy's score and seconds and the reference training time for ``rows`` (``pos``: seed positions,
        None: means over seeds)."""
        ref = self.train_time_s[rows]
        if pos is None:
            with np.errstate(invalid="ignore"):
                return {self.metric: self.values[:, rows].mean(axis=0),
                        "proxy_time_s": self.seconds[:, rows].mean(axis=0), "normal_train_time_s": ref}
        return {self.metric: self.values[pos, rows], "proxy_time_s": self.seconds[pos, rows],
                "normal_train_time_s": ref}

    def cost(self, metrics: dict[str, Any], cost_unit: str) -> Any:
        """The cost in ``cost_unit`` of proxy evaluations with these metrics (:meth:`batch`'s)."""
        return proxy_cost(cost_unit, seconds=metrics["proxy_time_s"], train_seconds=metrics["normal_train_time_s"],
                          epochs=self.epochs)

    def known_costs(self, cost_unit: str) -> np.ndarray:
        """Every chargeable proxy cost of the table in ``cost_unit`` (the ``missing_cost`` rule's reference)."""
        costs = proxy_cost(cost_unit, seconds=self.seconds, train_seconds=self.train_time_s[None, :],
                           epochs=self.epochs)
        costs = np.asarray(costs, dtype=np.float64).ravel()
        return costs[~cost_is_missing(costs)]

    def describe_cost(self, seed: Any, cost_unit: str) -> str:
        base = f"proxies/time_s/{self.name} (init seed {seed})"
        return base if cost_unit == "seconds" else f"{base} over the model's recorded train_time_s"
