"""Regularized evolution with and without a zero-cost proxy warm-up, at the bench budgets, on the bundled Blox-mini.

Run: ``python benchmarks/proxy_screening.py [--seeds 20] [--budgets 100,300,600] [--screen 100] [--jobs 2]``.

One ``run_bench`` per row (the same searches ``blox bench --agents evolution,proxy-evolution --proxy NAME``
runs): plain ``evolution``, then ``proxy-evolution`` screening ``--screen`` random models by a proxy (each
screen charged its recorded seconds) and training the 20 best-screened first. Proxies: synflow (the headline
proxy of Abdelfattah et al., ICLR 2021, read higher-is-better as published), grasp (the one proxy that ranks
Blox-mini positively), and snip read lower-is-better (the strongest proxy on Blox-mini, whose sign the
proxies report shows reversed: hindsight from the whole table, shown as an upper reference, not a fair
method). Prints a Markdown table (mean ± standard error of the test top-1 of the answer at each budget, the
share of the largest budget spent on screening, evaluations) and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

ROWS = (("evolution", None, "max"), ("proxy-evolution", "synflow", "max"), ("proxy-evolution", "grasp", "max"),
        ("proxy-evolution", "snip", "min"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budgets", default="100,300,600")
    parser.add_argument("--screen", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from blox_env import BenchSpec, run_bench

    budgets = tuple(float(b) for b in args.budgets.split(","))
    lines = ["| agent | proxy | " + " | ".join(f"test_top1 @ {b:g}" for b in budgets)
             + " | screening cost (share of the largest budget) | evaluations (of them screens) |",
             "| --- | --- | " + " | ".join("---" for _ in budgets) + " | --- | --- |"]
    out = []
    for agent, proxy, direction in ROWS:
        kwargs = {agent: {"screen": args.screen, "direction": direction}} if proxy else {}
        spec = BenchSpec.from_options(agents=(agent,), seeds=args.seeds, budgets=budgets, proxy=proxy,
                                      agent_kwargs=kwargs)
        t0 = time.perf_counter()
        res = run_bench(spec, jobs=args.jobs, progress=False)
        seconds = time.perf_counter() - t0
        row = res.rows[0]
        traces = [res.traces[(agent, s)] for s in range(args.seeds)]
        screen_cost = [sum(r["cost"] for r in t if r["fidelity"] == 0) for t in traces]
        screens = [sum(r["fidelity"] == 0 for r in t) for t in traces]
        answers = {b: row[f"best@{b:g}"] for b in budgets}  # (mean, standard error) of the harness's summary
        label = proxy if proxy is None else f"{proxy} ({'higher' if direction == 'max' else 'lower'} is better)"
        lines.append(f"| {agent} | {label or '-'} | " + " | ".join(f"{m:.2f} ± {s:.2f}" for m, s in answers.values())
                     + f" | {np.mean(screen_cost):.1f} ({np.mean(screen_cost) / max(budgets):.1%}) | "
                     f"{np.mean([len(t) for t in traces]):.0f} ({np.mean(screens):.0f}) |")
        out.append({"agent": agent, "proxy": proxy, "direction": direction, "answers": answers,
                    "screen_cost": float(np.mean(screen_cost)), "seconds": seconds})
    print("\n".join(lines))
    print(json.dumps({"seeds": args.seeds, "budgets": budgets, "screen": args.screen, "rows": out}, default=str))


if __name__ == "__main__":
    main()
