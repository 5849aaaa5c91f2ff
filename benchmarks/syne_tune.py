"""Syne Tune's simulator (RandomSearch, 1 worker) vs blox-env's random search at equal training budgets.

Run: ``python benchmarks/syne_tune.py [default]`` (needs the ``[syne-tune]`` extra; ``default`` keeps Syne Tune's
5-simulated-second polling). Prints mean ± standard error of the answers' seed-mean val_top1 per budget, the
models evaluated and the time per search (figures in BENCHMARKS.md).
"""

import sys
import tempfile
import time

import numpy as np
from syne_tune.backend.simulator_backend.simulator_backend import SimulatorConfig
from syne_tune.optimizer.baselines import RandomSearch

from blox_env.agents import make_agent
from blox_env.agents.loop import run_search
from blox_env.datasets.store.core import open_store
from blox_env.integrations.syne_tune import blackbox, simulate
from blox_env.rewards.tabular import TabularReward

KW = {} if sys.argv[1:] == ["default"] else {"tuner_sleep_time": 0.1, "simulator_config": SimulatorConfig(
    delay_on_trial_result=0.0, delay_complete_after_final_report=0.0, delay_complete_after_stop=0.0, delay_start=0.0,
    delay_stop=0.0)}
store = open_store("blox-mini")
mean_val = dict(zip(np.asarray(store.index).tolist(), store.get("val_top1", seed="mean")))
bb = blackbox(store)
BUDGETS = (30.0, 100.0, 300.0)
REPS = 30
res = {("st", b): [] for b in BUDGETS} | {("blox", b): [] for b in BUDGETS} | {("stbest", b): [] for b in BUDGETS}
cnt = {("st", b): [] for b in BUDGETS} | {("blox", b): [] for b in BUDGETS}
times = {"st": [], "blox": []}
for rep in range(REPS):
    np.random.seed(rep)
    t = time.perf_counter()
    df = simulate(bb, RandomSearch(bb.configuration_space, metrics=["metric_valid_error"], random_seed=rep),
                  n_workers=1, max_trials=150, output_dir=tempfile.mkdtemp(), **KW)
    times["st"].append(time.perf_counter() - t)
    final = df[df["epochs"] == 12]
    for b in BUDGETS:
        done = final[final["st_tuner_time"] <= b]
        best = done.loc[done["metric_valid_error"].idxmin()]
        idx = int(best["config_stage0"]) + 45 * int(best["config_stage1"]) + 2025 * int(best["config_stage2"])
        res[("st", b)].append(mean_val[idx])
        cnt[("st", b)].append(len(done))
        ids = set(done["trial_id"])
        sub = df[df["trial_id"].isin(ids)]
        bt = sub.groupby("trial_id")["metric_val_top1"].max().idxmax()
        r0 = sub[sub["trial_id"] == bt].iloc[0]
        idx = int(r0["config_stage0"]) + 45 * int(r0["config_stage1"]) + 2025 * int(r0["config_stage2"])
        res[("stbest", b)].append(mean_val[idx])
    for b in BUDGETS:
        backend = TabularReward(store, seed_mode="random")
        agent = make_agent("random", backend.space, seed=rep)
        t = time.perf_counter()
        trace = run_search(agent, backend, budget=b, cost_unit="seconds", seed=rep, metric="val_top1")
        times["blox"].append(time.perf_counter() - t)
        best = max(trace, key=lambda r: r["metrics"]["val_top1"])
        res[("blox", b)].append(mean_val[int(best["arch_index"])])
        cnt[("blox", b)].append(len(trace))
for b in BUDGETS:
    a, c = np.array(res[("st", b)]), np.array(res[("blox", b)])
    print(
        f"budget {b:5.0f} s: syne-tune {a.mean():.2f} ± {a.std(ddof=1) / np.sqrt(len(a)):.2f}   "
        f"blox {c.mean():.2f} ± {c.std(ddof=1) / np.sqrt(len(c)):.2f}   (seed-mean val_top1 of the answer, {REPS} reps)"
    )
    d = np.array(res[("stbest", b)])
    print(
        f"    syne-tune answer by best-so-far val_top1 (blox's rule): {d.mean():.2f} ± "
        f"{d.std(ddof=1) / np.sqrt(len(d)):.2f}; "
        f"models evaluated: syne-tune {np.mean(cnt[('st', b)]):.1f}, blox {np.mean(cnt[('blox', b)]):.1f}"
    )
print(
    f"wall time per search: syne-tune simulate (150 trials) {np.median(times['st']):.3f} s, "
    f"blox run_search {np.median(times['blox']):.4f} s (median)"
)
