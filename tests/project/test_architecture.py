"""The shape of the code: one validated env config, declared Protocols (no probing), one budget rule, run_bench."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from typer.testing import CliRunner

import blox_env  # noqa: F401 - registers the ids
from blox_env.agents import RandomSearch
from blox_env.agents.base import BaseAgent
from blox_env.agents.loop import run_search
from blox_env.agents.spec import BenchSpec
from blox_env.bench import run_bench
from blox_env.cli import app
from blox_env.datasets.synthetic import synthetic_store
from blox_env.envs.config import EnvConfig
from blox_env.errors import InvalidArgumentError, InvalidArgumentTypeError
from blox_env.rewards import TabularReward
from blox_env.space import SubSpace

ROOT = Path(__file__).resolve().parents[2]
CONCRETE_BACKENDS = ("TabularReward", "BlockwiseTabularReward", "LiveReward", "SurrogateReward")
PROBED = re.compile(r"^(self\.)?(backend|agent|short|full|short_backend|full_backend|b)$")


def _sources(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


def test_no_isinstance_on_a_concrete_backend_outside_rewards() -> None:
    offenders = []
    for path in _sources("blox_env", "agents", "datasets", "predictors"):
        if "rewards" in path.relative_to(ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("isinstance", "issubclass"):
                classes = ast.unparse(node.args[1]) if len(node.args) > 1 else ""
                if any(re.search(rf"\b{c}\b", classes) for c in CONCRETE_BACKENDS):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, "ask the backend through the Protocol instead:\n" + "\n".join(offenders)


def test_no_getattr_probes_of_backends_or_agents() -> None:
    offenders = []
    for path in _sources("agents", "blox_env/envs", "blox_env/runs"):
        for node in ast.walk(ast.parse(path.read_text())):
            probe = isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "hasattr")
            if probe and node.args and PROBED.match(ast.unparse(node.args[0])):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, "declare it on the Protocol (defaults in the base class):\n" + "\n".join(offenders)


def test_the_budget_rule_has_one_home() -> None:
    """The free-repeat stop rule, the missing-cost rule and the charging arithmetic are defined once."""
    names = {"free_streak": [], "def resolve_missing": [], "def charge_amount": [], "def unit_cost": [],
             "class SharedCharges": [], "FREE_STREAK_FACTOR =": []}
    for path in _sources("blox_env", "agents", "datasets", "predictors"):
        text = path.read_text()
        for name in names:
            if name in text:
                names[name].append(str(path.relative_to(ROOT)))
    for name, where in names.items():
        assert where == ["blox_env/runs/budget.py"], (name, where)


# ---------------------------------------------------------------------------------------------- EnvConfig
def test_env_config_is_validated_once_and_used_by_every_env() -> None:
    cfg = EnvConfig.from_kwargs(budget=np.int64(500), cost_unit="epochs", mode="normal")
    assert cfg.budget == 500.0 and isinstance(cfg.budget, float) and cfg.backend_kwargs == {"mode": "normal"}
    assert cfg.violation_reward == 0.0  # the scalar default
    vec = EnvConfig.from_kwargs(objectives=("val_top1", "params"))
    assert vec.violation_reward is None  # vectors: the low end of reward_space, chosen with the store
    with pytest.raises(InvalidArgumentError, match="budget"):
        cfg.replace(budget=-1)
    with pytest.raises(InvalidArgumentTypeError, match="metric"):
        EnvConfig(metric=3)
    for env_id in ("Blox-v0", "BloxOneShot-v0"):
        env = gym.make(env_id, budget=500, cost_unit="epochs")
        assert env.unwrapped.config == EnvConfig(budget=500.0, cost_unit="epochs")
        direct = type(env.unwrapped)(config=cfg.replace(backend_kwargs={}))
        assert direct.config.budget == 500.0
        with pytest.raises(InvalidArgumentError, match="either config= or keyword options"):
            type(env.unwrapped)(config=cfg, budget=5)
        vector = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", budget=500)
        assert vector.unwrapped.config.budget == 500.0
        with pytest.raises(InvalidArgumentError, match="render"):
            gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", render_mode="ansi")


def test_reset_checks_its_arguments_once(monkeypatch) -> None:
    from blox_env.envs import oneshot, sequential

    env = gym.make("Blox-v0").unwrapped
    calls = []
    original = sequential.check_reset
    monkeypatch.setattr(sequential, "check_reset", lambda *a: calls.append(a) or original(*a))
    monkeypatch.setattr(oneshot, "check_reset", lambda *a: calls.append(a) or original(*a))
    env.reset(seed=0, options={"new_run": True})
    assert len(calls) == 1


# ---------------------------------------------------------------------------------------------- Agent Protocol
class OnlyAsk:
    name = "only-ask"

    def ask(self):  # noqa: ANN201
        return None

    def tell(self, arch, evaluation) -> None:  # noqa: ANN001
        pass


def test_an_agent_missing_protocol_members_is_refused_by_name() -> None:
    backend = TabularReward(blox_env.open_store(None))
    with pytest.raises(InvalidArgumentTypeError, match="lacks fidelity, parallel_asks, reaskable, pending"):
        run_search(OnlyAsk(), backend, budget=10.0, cost_unit="evaluations", seed=0, metric="val_top1")


class BadAsk(BaseAgent):
    name = "bad-ask"

    def ask(self):  # noqa: ANN201
        return 5


def test_an_ask_that_is_not_an_arch_is_a_clear_error() -> None:
    backend = TabularReward(blox_env.open_store(None))
    agent = BadAsk(backend.space, seed=0)
    with pytest.raises(InvalidArgumentTypeError, match="must return a blox_env.Arch"):
        run_search(agent, backend, budget=10.0, cost_unit="evaluations", seed=0, metric="val_top1")


def test_base_agent_declares_every_protocol_member() -> None:
    from blox_env.agents.base import Agent

    agent = RandomSearch(SubSpace.full(), seed=0)
    assert isinstance(agent, Agent) and agent.reaskable and agent.parallel_asks
    agent.close()  # nothing to release, but callable


# ---------------------------------------------------------------------------------------------- run_bench
def test_run_bench_gives_the_summaries_blox_bench_prints(tmp_path: Path) -> None:
    store = synthetic_store(tmp_path / "s.zarr", space=SubSpace(((0, 9, 30), (1, 12, 36), (2, 21, 44))))
    spec = BenchSpec.from_options(agents=("random", "evolution"), seeds=2, budgets=(5.0, 12.0),
                                  cost_unit="evaluations")
    result = run_bench(spec, store=store.location, executor="serial", progress=False)
    assert [r["agent"] for r in result.rows] == ["random", "evolution"] and len(result.traces) == 4
    res = CliRunner().invoke(app, ["bench", "--store", store.location, "--agents", "random,evolution", "--seeds", "2",
                                   "--budgets", "5,12", "--cost-unit", "evaluations", "--executor", "serial",
                                   "--plot", str(tmp_path / "p.png")])
    assert res.exit_code == 0, res.output
    assert "".join(result.table().split()) in "".join(res.output.split())  # the console wraps long lines
    again = run_bench(spec, store=store.location, executor="serial", progress=False)
    assert again.rows == result.rows  # deterministic per seed
