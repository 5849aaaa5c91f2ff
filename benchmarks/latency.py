"""Validate the additive CPU latency table against end-to-end measurements of random models.

Run: ``python benchmarks/latency.py [--models 100] [--repeats 30]`` (default CIFAR-size models,
batch 1, one thread). Prints Spearman and mean absolute percentage error as a Markdown table.
"""

from __future__ import annotations

import argparse
import time

from common import machine

from blox_env.latency import LatencyConfig, component_latencies, device_name, latency_table, validate_table
from blox_env.space import sample_archs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    cfg = LatencyConfig(repeats=args.repeats)
    t = time.perf_counter()
    comps = component_latencies(cfg, progress=True)
    table_s = time.perf_counter() - t
    table = latency_table(comps)
    t = time.perf_counter()
    v = validate_table(comps, sample_archs(args.models, seed=0, replace=False), cfg)
    check_s = time.perf_counter() - t
    print(f"{time.strftime('%Y-%m-%d')}, {machine()}, device name {device_name()}, batch 1, 1 thread, "
          f"median of {args.repeats} after 10 warm-up runs")
    print("| measurement | value |\n| --- | --- |")
    print(f"| measuring the component table (stem, 135 blocks, 3 reductions, head) | {table_s:.0f} s |")
    print(f"| predicted latency range over 91,125 models | {table.min() * 1e3:.2f} .. {table.max() * 1e3:.2f} ms |")
    print(f"| end-to-end check on {v['n']} random models | {check_s:.0f} s |")
    print(f"| Spearman (table vs end-to-end) | {v['spearman']:.3f} |")
    print(f"| mean absolute percentage error | {100 * v['mape']:.1f}% |")
    measured, predicted = v["mean_measured_s"] * 1e3, v["mean_predicted_s"] * 1e3
    print(f"| mean measured / mean predicted | {measured:.2f} / {predicted:.2f} ms |")


if __name__ == "__main__":
    main()
