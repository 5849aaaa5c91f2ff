"""Profile one Blox-mini training (digits_mini recipe, one torch thread): by op and shape, and by phase.

Run: ``python benchmarks/profile_training.py [--archs 9,9,9/11,11,11] [--top 15] [--repeats 3]``.
For each model: (1) a phase table — where the wall time of one training goes outside and inside the
kernels (batching + augmentation, forward, backward, optimizer step, the rest of the batch loop, the
validation passes, copies of the best weights, the final test pass), measured by timing wrappers
around the engine's own functions (exclusive time, median of ``--repeats`` trainings after a warm-up);
(2) an op table — ``torch.profiler`` over one training, grouped by op name and input shapes, top rows
by self CPU time. Plus the per-process start-up (imports, data) in a fresh interpreter and one
result's store write. Shares (percent) are the figures to read when the machine is shared.
``--engines plain,fast`` profiles the plain engine (``BLOX_FAST_KERNELS=0``) and the fast one side by side.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from common import machine
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

import blox_env.training.train as train_mod
from blox_env.datasets.images import load_digits
from blox_env.kernels import fast_kernels
from blox_env.space import Arch
from blox_env.training.recipes import DIGITS_MINI

PHASES = ("batching + augmentation", "forward (train)", "backward", "optimizer step", "loss, metrics, rest of loop",
          "validation passes", "copies of best weights", "final test pass (+ load best)", "model init")


class PhaseClock:
    """Exclusive wall time per phase: nested phases pause their parent."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.stack: list[tuple[str, float]] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        now = time.perf_counter()
        if self.stack:
            parent, since = self.stack[-1]
            self.totals[parent] += now - since
        self.stack.append((name, now))
        try:
            yield
        finally:
            end = time.perf_counter()
            _, since = self.stack.pop()
            self.totals[name] += end - since
            if self.stack:
                self.stack[-1] = (self.stack[-1][0], end)


def _instrument(clock: PhaseClock) -> Callable[[], None]:
    """Wrap the engine's functions with phase timers; returns the undo."""
    orig_iter, orig_eval, orig_copy = train_mod.iterate_batches, train_mod.evaluate, train_mod.copy
    orig_backward, orig_init = torch.Tensor.backward, train_mod.init_model
    state = {"final": False}

    def iterate(*args: Any, **kwargs: Any) -> Iterator[Any]:
        it = orig_iter(*args, **kwargs)
        while True:
            with clock.phase("batching + augmentation"):
                try:
                    item = next(it)
                except StopIteration:
                    return
            yield item

    def evaluate(*args: Any, **kwargs: Any) -> Any:
        with clock.phase("final test pass (+ load best)" if state["final"] else "validation passes"):
            return orig_eval(*args, **kwargs)

    class _Copy:
        @staticmethod
        def deepcopy(obj: Any) -> Any:
            with clock.phase("copies of best weights"):
                return copy.deepcopy(obj)

    def backward(self: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        with clock.phase("backward"):
            return orig_backward(self, *args, **kwargs)

    def init(*args: Any, **kwargs: Any) -> Any:
        with clock.phase("model init"):
            model = orig_init(*args, **kwargs)
        _hook_forward(model, clock, state)
        return model

    train_mod.iterate_batches, train_mod.evaluate, train_mod.copy = iterate, evaluate, _Copy  # type: ignore[assignment]
    train_mod.init_model = init  # type: ignore[assignment]
    torch.Tensor.backward = backward  # type: ignore[method-assign]
    h1 = register_optimizer_step_pre_hook(
        lambda *_: clock.stack.append(("optimizer step", _pause(clock))))
    h2 = register_optimizer_step_post_hook(lambda *_: _pop(clock))
    state["clock"] = clock

    def undo() -> None:
        train_mod.iterate_batches, train_mod.evaluate, train_mod.copy = orig_iter, orig_eval, orig_copy
        train_mod.init_model = orig_init
        torch.Tensor.backward = orig_backward  # type: ignore[method-assign]
        h1.remove()
        h2.remove()

    return undo


def _pause(clock: PhaseClock) -> float:
    now = time.perf_counter()
    if clock.stack:
        parent, since = clock.stack[-1]
        clock.totals[parent] += now - since
    return now


def _pop(clock: PhaseClock) -> None:
    end = time.perf_counter()
    name, since = clock.stack.pop()
    clock.totals[name] += end - since
    if clock.stack:
        clock.stack[-1] = (clock.stack[-1][0], end)


def _hook_forward(model: torch.nn.Module, clock: PhaseClock, state: dict[str, Any]) -> None:
    """Time training-mode forwards (eval forwards stay in their evaluation phase); mark the final load."""

    def pre(mod: torch.nn.Module, _args: Any) -> None:
        if mod.training:
            clock.stack.append(("forward (train)", _pause(clock)))

    def post(mod: torch.nn.Module, _args: Any, _out: Any) -> None:
        if mod.training:
            _pop(clock)

    model.register_forward_pre_hook(pre)
    model.register_forward_hook(post)
    orig_load = model.load_state_dict

    def load(*args: Any, **kwargs: Any) -> Any:
        state["final"] = True
        with clock.phase("final test pass (+ load best)"):
            return orig_load(*args, **kwargs)

    model.load_state_dict = load  # type: ignore[method-assign]


def phase_shares(arch: Arch, data: Any, *, repeats: int) -> tuple[dict[str, float], float]:
    """Median seconds per phase over ``repeats`` instrumented trainings, and the median total."""
    runs: list[dict[str, float]] = []
    totals = []
    train_mod.train_model(arch, data, recipe=DIGITS_MINI, seed=0, device="cpu")  # warm-up (oneDNN primitives)
    for r in range(repeats):
        clock = PhaseClock()
        undo = _instrument(clock)
        try:
            t = time.perf_counter()
            with clock.phase("loss, metrics, rest of loop"):
                train_mod.train_model(arch, data, recipe=DIGITS_MINI, seed=r, device="cpu")
            totals.append(time.perf_counter() - t)
        finally:
            undo()
        runs.append(dict(clock.totals))
    return {p: statistics.median(run.get(p, 0.0) for run in runs) for p in PHASES}, statistics.median(totals)


def op_table(arch: Arch, data: Any, *, top: int) -> list[tuple[str, str, int, float]]:
    """(op, input shapes, calls, self-CPU share) of the top ops of one profiled training."""
    from torch.profiler import ProfilerActivity, profile

    train_mod.train_model(arch, data, recipe=DIGITS_MINI, seed=0, device="cpu")
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        train_mod.train_model(arch, data, recipe=DIGITS_MINI, seed=0, device="cpu")
    rows = prof.key_averages(group_by_input_shape=True)
    total = sum(r.self_cpu_time_total for r in rows)
    rows = sorted(rows, key=lambda r: r.self_cpu_time_total, reverse=True)[:top]
    return [(r.key, _shapes(r.input_shapes), r.count, 100.0 * r.self_cpu_time_total / total) for r in rows]


def _shapes(shapes: Any) -> str:
    kept = [s for s in shapes if s]
    return " ".join("x".join(map(str, s)) for s in kept[:3]) if kept else "-"


def startup_seconds() -> dict[str, float]:
    """Fresh interpreter: seconds to import torch + the engine, and to load the digits."""
    code = ("import time; t0 = time.perf_counter(); import torch; torch.set_num_threads(1); "
            "import blox_env.training.train, blox_env.build.benchmark; t1 = time.perf_counter(); "
            "from blox_env.datasets.images import load_digits; load_digits(seed=0); t2 = time.perf_counter(); "
            "print(t1 - t0, t2 - t1)")
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    whole = time.perf_counter() - t
    return {"imports (torch + engine)": float(out[0]), "digits load": float(out[1]),
            "interpreter start + exit": whole - float(out[0]) - float(out[1])}


def store_write_seconds(data: Any, *, n: int = 20) -> float:
    """Median seconds of one result's store write (the builder's ``record_result`` + worker row)."""
    from blox_env.build.mini import MINI_SPACE
    from blox_env.build.prepare import prepare_run, prepare_store
    from blox_env.training.results import record_result
    from blox_env.training.train import TrainResult, model_config_for

    with tempfile.TemporaryDirectory() as tmp:
        idx = MINI_SPACE.indices()
        st = prepare_store(Path(tmp) / "s.zarr", idx, name="p", config=model_config_for(data, DIGITS_MINI))
        from blox_env.datasets.store.encoding import Encoding
        prepare_run(st, "r", seeds=[0], recipe=DIGITS_MINI, data=data, data_spec={"data": "digits"}, attrs={},
                    extra={"worker": (Encoding("raw", "int32"), False)})
        curves = {k: [100.0] * DIGITS_MINI.epochs for k in train_mod.CURVES}  # exact in every count encoding
        times = []
        for i in idx[:n].tolist():
            res = TrainResult(int(i), 0, DIGITS_MINI.epochs, curves, 1, 1.0, 100.0, 100.0, 1.0, 1.0)
            t = time.perf_counter()
            record_result(st, "r", res, seed=0)
            st.write_rows("r", "worker", [int(i)], [0], seed=0)
            times.append(time.perf_counter() - t)
        st.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--archs", default="9,9,9/11,11,11", help="models as b0,b1,b2 separated by /")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engines", default="plain,fast", help="plain (BLOX_FAST_KERNELS=0), fast, or both")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_digits(seed=0)
    archs = [Arch.from_blocks(*map(int, a.split(","))) for a in args.archs.split("/")]
    engines = [e.strip() for e in args.engines.split(",")]
    if not set(engines) <= {"plain", "fast"}:
        sys.exit("--engines: a comma-separated subset of plain, fast")
    print(f"{time.strftime('%Y-%m-%d')}, {machine()}, torch {torch.__version__}, 1 thread, recipe digits_mini; "
          f"shares of the median of {args.repeats} trainings after a warm-up\n")
    cols = [(a, e) for a in archs for e in engines]
    shares = {}
    for a, e in cols:
        with fast_kernels(e == "fast"):
            shares[(a.blocks, e)] = phase_shares(a, data, repeats=args.repeats)
    heads = " | ".join(f"{a.blocks} {e}" for a, e in cols)
    print(f"| phase of one training | {heads} |\n| --- |" + " --- |" * len(cols))
    for p in PHASES:
        print(f"| {p} | " + " | ".join(f"{100 * s[p] / tot:.1f}%" for s, tot in shares.values()) + " |")
    print("| whole training (median s) | " + " | ".join(f"{tot:.2f} s" for _, tot in shares.values()) + " |\n")
    start = startup_seconds()
    store_s = store_write_seconds(data)
    ref = statistics.median(tot for (_, e), (_, tot) in shares.items() if e == engines[0])
    print(f"| outside the training | seconds | vs one training ({engines[0]}, median of the models above) |\n"
          "| --- | --- | --- |")
    for k, v in {**start, "store write of one result (driver)": store_s}.items():
        print(f"| {k} | {v:.3f} | {100 * v / ref:.1f}% |")
    for a, e in cols:
        print(f"\n| {a.blocks} {e}: op | input shapes | calls | self CPU |\n| --- | --- | --- | --- |")
        with fast_kernels(e == "fast"):
            rows = op_table(a, data, top=args.top)
        for key, shapes, count, share in rows:
            print(f"| {key} | {shapes} | {count} | {share:.1f}% |")


if __name__ == "__main__":
    main()
