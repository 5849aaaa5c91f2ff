"""Hypervolume stays bounded: exact up to a stated size, refused or estimated above it.

The cases whose old behaviour hangs inside moocore's C code (where Ctrl-C is not seen) run in a child
process with a timeout and a memory limit, so that a regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from blox_test_helpers import interruptible

from blox_env.errors import InvalidArgumentError
from blox_env.pareto import (
    EXACT_MAX_OBJECTIVES,
    EXACT_MAX_POINTS,
    exact_limit,
    hypervolume,
    hypervolume_estimate,
    hypervolume_regret,
)

MEMORY_LIMIT = 4 * 2**30  # bytes of address space for the child: a runaway fails, it does not swap the machine

# The case: 100 uniform random points in 10 objectives (exact: past 60 s inside moocore's C code).
HARD_SET = """
import numpy as np
pts = np.random.default_rng(0).random((100, 10))
ref = np.full(10, 1.1)
"""


#: the children's working folder: never the repo root, whose blox_env/ would shadow an installed wheel
HERE = Path(__file__).resolve().parent


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _interruptible_and_limited() -> None:
    _limit_memory()
    interruptible()


def run_child(code: str, *, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh Python with a memory limit; a hang fails the test after ``timeout`` s."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=_limit_memory,
                          cwd=HERE)


def sphere_points(n: int, k: int, seed: int = 0) -> np.ndarray:
    x = np.abs(np.random.default_rng(seed).normal(size=(n, k)))
    return 1.0 - x / np.linalg.norm(x, axis=1, keepdims=True)


def test_100_points_in_10_objectives_are_refused_at_once_not_computed_for_minutes() -> None:
    proc = run_child(HARD_SET + """
from blox_env.errors import InvalidArgumentError
from blox_env.pareto import hypervolume
try:
    hypervolume(pts, reference=ref)
except InvalidArgumentError as exc:
    print("refused:", exc)
""", timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "refused:" in proc.stdout
    for words in ("100 points", "10 objectives", "35", "method='monte-carlo'", "method='exact'"):
        assert words in proc.stdout


def test_100_points_in_10_objectives_by_monte_carlo_take_seconds_and_state_their_error() -> None:
    proc = run_child(HARD_SET + """
from blox_env.pareto import hypervolume, hypervolume_estimate
est = hypervolume_estimate(pts, reference=ref, method="monte-carlo")
assert hypervolume(pts, reference=ref, method="monte-carlo") == est.value  # the same seed by default
print(est.value, est.stderr, est.method, est.n_points, est.samples, est.seed)
""", timeout=30)
    assert proc.returncode == 0, proc.stderr
    value, stderr, method, n, samples, seed = proc.stdout.split()
    assert method == "monte-carlo" and (int(n), int(samples), int(seed)) == (100, 100_000, 0)
    assert 0 < float(stderr) < 0.05 * float(value) < float(value) <= 1.1**10


def test_exact_over_the_limit_waits_interruptibly_and_ctrl_c_stops_it() -> None:
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HARD_SET + """
import sys
from blox_env.pareto import hypervolume
print("computing", flush=True)
hypervolume(pts, reference=ref, method="exact")
print("finished", flush=True)
""")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_interruptible_and_limited, cwd=HERE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "computing"
        time.sleep(3.0)  # the worker is deep in the C code by now
        child.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, err = child.communicate(timeout=20)
        assert time.monotonic() - started < 10
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "KeyboardInterrupt" in err, err
    assert child.returncode != 0


def test_exact_over_the_limit_stops_at_its_timeout() -> None:
    proc = run_child(HARD_SET + """
import time
from blox_env.pareto import hypervolume
t = time.monotonic()
try:
    hypervolume(pts, reference=ref, method="exact", timeout=1.0)
except TimeoutError as exc:
    print(f"{time.monotonic() - t:.2f}", exc)
""", timeout=60)
    assert proc.returncode == 0, proc.stderr
    took, message = proc.stdout.split(" ", 1)
    assert float(took) < 15
    assert "timeout=1.0" in message and "monte-carlo" in message


def test_exact_over_the_limit_in_a_worker_equals_moocore() -> None:
    import moocore

    limit = EXACT_MAX_POINTS[5]
    pts = sphere_points(limit + 1, 5)
    ref = np.full(5, 1.1)
    with pytest.raises(InvalidArgumentError, match="method='monte-carlo'"):
        hypervolume(pts, reference=ref)
    assert hypervolume(pts, reference=ref, method="exact", timeout=60) == pytest.approx(
        moocore.hypervolume(pts, ref=ref), rel=1e-12)


def test_monte_carlo_agrees_with_exact_within_its_stated_error() -> None:
    pts = sphere_points(60, 5, seed=3)
    ref = np.full(5, 1.1)
    exact = hypervolume_estimate(pts, reference=ref)
    assert exact.method == "exact" and exact.stderr == 0.0 and exact.samples == 0
    est = hypervolume_estimate(pts, reference=ref, method="monte-carlo", samples=50_000, seed=7)
    assert est.stderr > 0
    assert abs(est.value - exact.value) < 4 * est.stderr
    assert hypervolume_estimate(pts, reference=ref, method="monte-carlo", samples=50_000, seed=7) == est
    assert hypervolume_estimate(pts, reference=ref, method="monte-carlo", samples=50_000, seed=8).value != est.value
    # maximised objectives in their own units: the same estimate
    flipped = hypervolume_estimate(-pts, reference=-ref, directions="max", method="monte-carlo", samples=50_000,
                                   seed=7)
    assert flipped.value == pytest.approx(est.value) and flipped.stderr == pytest.approx(est.stderr)


def test_monte_carlo_by_hand_2d() -> None:
    pts = np.array([[1.0, 4.0], [2.0, 2.0], [4.0, 1.0]])
    est = hypervolume_estimate(pts, reference=[5.0, 5.0], method="monte-carlo", samples=200_000)
    assert abs(est.value - 11.0) < 4 * est.stderr
    assert est.stderr < 0.05
    # one point: the sampled box is exactly the dominated region, so the estimate is exact
    one = hypervolume_estimate(pts[:1], reference=[5.0, 5.0], method="monte-carlo")
    assert (one.value, one.stderr) == (4.0, 0.0)
    # nothing inside the reference: 0 with no error
    assert hypervolume_estimate([[6.0, 6.0]], reference=[5.0, 5.0], method="monte-carlo")[:2] == (0.0, 0.0)


def test_the_stated_limits() -> None:
    assert exact_limit(2) is None and exact_limit(3) is None
    assert exact_limit(4) == 10_000 and exact_limit(10) == 35 and exact_limit(14) == 15 and exact_limit(31) == 12
    pts = sphere_points(exact_limit(10), 10)  # at the limit: exact, in this process
    assert hypervolume(pts, reference=np.full(10, 1.1)) > 0
    # points outside the reference do not count towards the limit
    outside = np.vstack([pts, np.full((50, 10), 2.0)])
    assert hypervolume(outside, reference=np.full(10, 1.1)) == hypervolume(pts, reference=np.full(10, 1.1))
    many = np.random.default_rng(0).random((20, EXACT_MAX_OBJECTIVES + 1))
    with pytest.raises(InvalidArgumentError, match="at most 31 objectives"):
        hypervolume(many, reference=np.full(EXACT_MAX_OBJECTIVES + 1, 1.1), method="exact")
    assert hypervolume(many, reference=np.full(EXACT_MAX_OBJECTIVES + 1, 1.1), method="monte-carlo",
                       samples=1000) >= 0


def test_regret_takes_the_same_method() -> None:
    pts = sphere_points(40, 10)
    ref = np.full(10, 1.1)
    with pytest.raises(InvalidArgumentError, match="monte-carlo"):
        hypervolume_regret(pts[:5], front=pts, reference=ref)
    regret = hypervolume_regret(pts[:5], front=pts, reference=ref, method="monte-carlo", samples=20_000)
    assert regret > 0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"method": "fast"}, "method must be one of"),
    ({"method": None}, "method must be one of"),
    ({"samples": 0}, "samples must be an integer in 1..100000000"),
    ({"samples": 1.5}, "samples must be an integer"),
    ({"samples": True}, "samples must be an integer"),
    ({"seed": -1}, r"seed must be an integer in 0..2\*\*63-1"),
    ({"seed": 2**63}, r"seed must be an integer in 0..2\*\*63-1"),
    ({"timeout": 0}, "timeout must be None or a finite number of seconds > 0"),
    ({"timeout": float("nan")}, "timeout must be None"),
])
def test_bad_method_arguments_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        hypervolume([[1.0, 1.0]], reference=[2.0, 2.0], **kwargs)
