"""Zero-cost proxy screening: regularized evolution warmed up by a proxy, as Abdelfattah et al. (ICLR 2021) did.

:class:`ProxyScreenedEvolution` first scores ``screen`` distinct random feasible models by a zero-cost proxy
(asks at the proxy fidelity, :data:`~blox_env.runs.budget.PROXY_FIDELITY`: the backend must answer one, e.g.
``make_tabular_backend(store, proxy="synflow")`` or ``blox bench --proxy synflow``), each charged its proxy
seconds; then it trains the ``population`` best-screened models first (best proxy score first, in
``direction``) as the initial population of aging evolution, and goes on exactly as
:class:`~blox_env.agents.evolution.RegularizedEvolution`. Proxy scores never enter the population or
``history`` and are never the search's answer (``screened`` keeps them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from blox_env.agents.evolution import RegularizedEvolution, positive_int
from blox_env.errors import InvalidArgumentError
from blox_env.runs.budget import PROXY_FIDELITY
from blox_env.space import Arch, SubSpace

if TYPE_CHECKING:
    from blox_env.rewards.base import Evaluation

__all__ = ["ProxyScreenedEvolution"]


class ProxyScreenedEvolution(RegularizedEvolution):
    """Aging evolution whose initial population is the best of ``screen`` models by a zero-cost proxy.

    ``direction``: ``"max"`` (the proxies' convention: higher is better) or ``"min"`` (for a proxy known to rank
    a space backwards). ``screen`` is capped by the number of feasible models.
    """

    name = "proxy-evolution"

    def __init__(self, space: SubSpace, *, seed: int | np.random.Generator, screen: int = 100, population: int = 20,
                 sample_size: int = 5, direction: str = "max", metric: str = "val_top1",
                 constraint: Callable[[Arch], bool] | None = None) -> None:
        super().__init__(space, seed=seed, population=population, sample_size=sample_size, metric=metric,
                         constraint=constraint)
        self.screen = positive_int(screen, "screen")
        if direction not in ("max", "min"):
            raise InvalidArgumentError(f"direction must be 'max' (higher proxy scores first) or 'min', got "
                                       f"{direction!r}")
        self.direction = direction
        self.screened: dict[int, float] = {}  # model index -> proxy score, as told
        self._screen_asked: set[int] = set()
        self._ranked_taken = 0  # best-screened models asked for training so far (at most ``population``)

    def ask(self) -> Arch:
        target = min(self.screen, len(self.feasible_indices()))
        if len(self._screen_asked) < target:
            self.fidelity = PROXY_FIDELITY
            arch = self.sample(exclude=self._screen_asked)
            self._screen_asked.add(arch.index)
            return arch
        self.fidelity = None
        if self._ranked_taken < self.population_size:
            # the best-screened model not trained or in flight yet, ranked afresh at each ask: on parallel workers
            # a training ask may come before every screen is told (it then uses the screens told so far, or, with
            # none, draws a random initial member as plain evolution does, which leaves the ranked slots intact)
            sign = 1.0 if self.direction == "max" else -1.0
            busy = self._seen | self.pending_indices
            scored = [(-sign * v, i) for i, v in self.screened.items() if np.isfinite(v) and i not in busy]
            if scored:
                index = min(scored)[1]
                self._ranked_taken += 1
                self._initial_asked += 1
                self._seen.add(index)
                return Arch.from_index(index)
        return super().ask()

    def tell(self, arch: Arch, evaluation: Evaluation) -> None:
        if evaluation.fidelity != PROXY_FIDELITY:
            super().tell(arch, evaluation)
            return
        names = [m for m in evaluation.metrics if m.startswith("proxy:")]
        if len(names) != 1:
            raise InvalidArgumentError(f"a proxy evaluation must carry one 'proxy:<name>' metric, got "
                                       f"{', '.join(sorted(evaluation.metrics))}")
        if arch.index in self._pending:
            self._pending = self._pending - {arch.index}
        self.screened[arch.index] = float(evaluation.metrics[names[0]])
