"""proxy-evolution: screen by a zero-cost proxy, train the best-screened first, then aging evolution; and its bench."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blox_env import BenchSpec, run_bench
from blox_env.agents import ProxyScreenedEvolution, make_agent
from blox_env.agents.loop import run_search
from blox_env.datasets.store.core import open_store
from blox_env.errors import InvalidArgumentError
from blox_env.rewards.tabular import TabularReward
from blox_env.runs import PROXY_FIDELITY
from blox_env.space import Arch


@pytest.fixture(scope="module")
def store():
    return open_store()


@pytest.mark.parametrize("direction", ["max", "min"])
def test_screens_then_trains_the_best_screened_in_order(store, direction: str) -> None:
    backend = TabularReward(store, proxy="snip", proxy_init_seed=0)
    agent = ProxyScreenedEvolution(backend.space, seed=3, screen=30, population=8, direction=direction)
    trace = run_search(agent, backend, budget=60.0, cost_unit="seconds", seed=3, metric="val_top1")
    screens, trained = trace[:30], trace[30:]
    assert all(r["fidelity"] == PROXY_FIDELITY for r in screens)
    assert len({r["arch_index"] for r in screens}) == 30 and all(r["fidelity"] > 0 for r in trained)
    scores = {r["arch_index"]: r["metrics"]["proxy:snip"] for r in screens}
    want = sorted(scores, key=lambda i: (-scores[i] if direction == "max" else scores[i], i))[:8]
    assert [r["arch_index"] for r in trained[:8]] == want  # the population: best-screened first, in order
    assert len(agent.history) == len(trained) and agent.screened == scores  # proxies never join the history
    assert all(math.isnan(r["objective"]) and r["select"] is False for r in screens)
    # screening is charged: each screen its recorded proxy seconds at init seed 0
    expected = store.get_proxy("snip", [r["arch_index"] for r in screens], init_seed=0, time=True)
    np.testing.assert_allclose([r["cost"] for r in screens], expected)


def test_screen_is_capped_by_the_feasible_models(store) -> None:
    backend = TabularReward(store, proxy="nwot", proxy_init_seed=0)
    agent = make_agent("proxy-evolution", backend.space, seed=0, screen=10_000, population=5)
    trace = run_search(agent, backend, budget=1e9, cost_unit="evaluations", seed=0, metric="val_top1",
                       max_evaluations=740)
    assert sum(r["fidelity"] == 0 for r in trace) == len(store)


def test_bad_options(store) -> None:
    space = TabularReward(store).space
    with pytest.raises(InvalidArgumentError, match="direction must be 'max'"):
        ProxyScreenedEvolution(space, seed=0, direction="up")
    with pytest.raises(InvalidArgumentError, match="screen must be an integer >= 1"):
        ProxyScreenedEvolution(space, seed=0, screen=0)


def test_bench_runs_it_against_plain_evolution_and_refuses_it_without_a_proxy() -> None:
    spec = BenchSpec.from_options(agents=("evolution", "proxy-evolution"), seeds=2, budgets=(20.0, 40.0),
                                  proxy="synflow", agent_kwargs={"proxy-evolution": {"screen": 15}})
    res = run_bench(spec, jobs=1, executor="serial", progress=False)
    rows = {r["agent"]: r for r in res.rows}
    assert rows["proxy-evolution"]["answered@40"] == 2 and np.isfinite(rows["proxy-evolution"]["best@40"][0])
    assert all(sum(r["fidelity"] == 0 for r in res.traces[("proxy-evolution", s)]) == 15 for s in range(2))
    assert not any(r["fidelity"] == 0 for r in res.traces[("evolution", 0)])
    with pytest.raises(InvalidArgumentError, match="proxy-evolution.*--proxy"):
        run_bench(BenchSpec.from_options(agents=("proxy-evolution",), seeds=1, budgets=(10.0,)), jobs=1,
                  executor="serial", progress=False)
    with pytest.raises(InvalidArgumentError, match="unknown proxy 'nope'"):
        run_bench(BenchSpec.from_options(agents=("evolution",), seeds=1, budgets=(10.0,), proxy="nope"), jobs=1,
                  executor="serial", progress=False)
    with pytest.raises(InvalidArgumentError, match="mode='normal'"):
        BenchSpec.from_options(agents=("evolution",), mode="blockwise", proxy="snip")


def test_spec_key_of_a_spec_without_the_new_options_is_unchanged() -> None:
    """Traces written before the proxy and live-replay options existed still resume: the key of a spec that leaves
    them at their defaults is the one the code before them computed (recorded here as a literal)."""
    from blox_env.bench import spec_key

    spec = BenchSpec.from_options(agents=("evolution",), seeds=2, budgets=(10.0,))
    assert spec_key(spec) == "ba8dd4f7f4e9"
    assert spec_key(BenchSpec.from_options(agents=("evolution",), seeds=2, budgets=(10.0,), proxy="snip")) \
        != "ba8dd4f7f4e9"


def test_screens_told_after_the_first_training_ask_still_rank(store) -> None:
    """On parallel simulated workers (a sync batch asks for trainings before its screens are told) the best-screened
    models are still trained first once the screens are in; training asks made before any screen was told draw
    random initial members without using up the best-screened slots."""
    from blox_env.agents.parallel import run_parallel_search

    backend = TabularReward(store, proxy="snip", proxy_init_seed=0)
    for mode in ("sync",):
        agent = ProxyScreenedEvolution(backend.space, seed=1, screen=6, population=4, sample_size=2)
        trace = run_parallel_search(agent, backend, sim_workers=8, mode=mode, budget=40.0, budget_kind="compute",
                                    cost_unit="seconds", seed=1, metric="val_top1")
        screens = {r["arch_index"]: r["metrics"]["proxy:snip"] for r in trace if r["fidelity"] == 0}
        trained = [r["arch_index"] for r in trace if r["fidelity"] > 0]
        assert len(screens) == 6
        assert set(sorted(screens, key=lambda i: -screens[i])[:4]) <= set(trained[:10]), mode  # batches 1 and 2


def test_a_proxy_and_a_training_of_one_model_do_not_wait_for_each_other(store) -> None:
    """On simulated workers a repeat waits for the model's running evaluation; a proxy is other work, so a proxy of
    a model in training ends after its own seconds, not after the training."""
    from blox_env.agents import BaseAgent
    from blox_env.agents.parallel import run_parallel_search

    backend = TabularReward(store, proxy="snip", proxy_init_seed=0)
    model = Arch.from_index(int(store.index[7]))

    class TrainThenProxy(BaseAgent):
        def ask(self) -> Arch:
            self.fidelity = None if not self._asked else PROXY_FIDELITY
            self._asked = True
            return model

        def tell(self, arch: Arch, evaluation) -> None:
            if evaluation.fidelity != PROXY_FIDELITY:
                super().tell(arch, evaluation)

        _asked = False

    trace = run_parallel_search(TrainThenProxy(backend.space, seed=0), backend, sim_workers=2, mode="async",
                                budget=1e9, budget_kind="compute", cost_unit="seconds", seed=0, metric="val_top1",
                                max_evaluations=2)
    proxy = next(r for r in trace if r["fidelity"] == PROXY_FIDELITY)
    trained = next(r for r in trace if r["fidelity"] > 0)
    assert proxy["sim_wall_clock"] == pytest.approx(proxy["cost"])
    assert proxy["sim_wall_clock"] < trained["sim_wall_clock"]
