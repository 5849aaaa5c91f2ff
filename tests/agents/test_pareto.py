"""Pareto tools and objectives: hypervolumes and fronts checked by hand on small cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from blox_env.datasets.store.core import BloxStore
from blox_env.errors import InvalidArgumentError
from blox_env.objectives import (
    Objective,
    default_direction,
    metrics_matrix,
    objective_matrix,
    parse_objectives,
)
from blox_env.pareto import (
    check_points,
    hypervolume,
    hypervolume_regret,
    nondominated,
    pareto_ranks,
    reference_point,
    true_front,
)
from blox_env.space import SubSpace


# ---------------------------------------------------------------------------------------------- independent checks
def rectangle_sum_2d(points: np.ndarray, ref: np.ndarray) -> float:
    """2-D hypervolume (minimisation) as a sum of vertical slices between consecutive x coordinates."""
    pts = [p for p in points.tolist() if p[0] < ref[0] and p[1] < ref[1]]
    xs = sorted({p[0] for p in pts} | {ref[0]})
    area = 0.0
    for lo, hi in zip(xs, xs[1:]):
        heights = [ref[1] - p[1] for p in pts if p[0] <= lo]
        area += (hi - lo) * max(heights, default=0.0)
    return area


def box_count_3d(points: np.ndarray, ref: np.ndarray) -> int:
    """3-D hypervolume (minimisation) of integer points: count the unit cells some point dominates."""
    lo = points.min(axis=0).astype(int)
    total = 0
    for cell in itertools.product(*(range(int(lo[j]), int(ref[j])) for j in range(3))):
        if any(all(p[j] <= cell[j] for j in range(3)) for p in points):
            total += 1
    return total


# ---------------------------------------------------------------------------------------------- hypervolume
def test_hypervolume_2d_by_hand() -> None:
    pts = np.array([[1.0, 4.0], [2.0, 2.0], [4.0, 1.0]])
    ref = np.array([5.0, 5.0])
    # slices [1,2): height 1; [2,4): height 3; [4,5): height 4  ->  1 + 6 + 4
    assert hypervolume(pts, reference=ref) == pytest.approx(11.0)
    assert rectangle_sum_2d(pts, ref) == pytest.approx(11.0)
    assert hypervolume(pts[:1], reference=ref) == pytest.approx(4.0)  # one box: 4 x 1


def test_hypervolume_with_a_maximised_objective_by_hand() -> None:
    # accuracy (max) vs latency (min): boxes [60,90]x[3,4] and [60,80]x[1,4], overlap [60,80]x[3,4]
    pts = np.array([[90.0, 3.0], [80.0, 1.0], [70.0, 2.0]])  # the last is dominated by the second
    hv = hypervolume(pts, reference=(60.0, 4.0), directions=("max", "min"))
    assert hv == pytest.approx(30.0 + 60.0 - 20.0)
    objs = (Objective("val_top1", "max"), Objective("params", "min"))
    assert hypervolume(pts, reference=(60.0, 4.0), directions=objs) == pytest.approx(70.0)
    # all maximised: negating every column and the reference gives the same volume
    assert hypervolume(-pts, reference=(-60.0, -4.0), directions="max") == pytest.approx(
        hypervolume(pts, reference=(60.0, 4.0)))


def test_hypervolume_3d_by_hand() -> None:
    assert hypervolume([[1, 2, 3], [2, 1, 1]], reference=(3, 3, 3)) == pytest.approx(4.0)  # 0 + 1*2*2
    # three slabs of 9 each, pairwise overlaps of 3, a triple overlap of 1: 27 - 9 + 1
    pts = np.array([[0, 0, 2], [0, 2, 0], [2, 0, 0]], dtype=float)
    assert hypervolume(pts, reference=(3, 3, 3)) == pytest.approx(19.0)
    assert box_count_3d(pts, np.array([3, 3, 3])) == 19


@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_matches_independent_sums_on_random_integer_sets(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p2 = rng.integers(0, 8, size=(7, 2)).astype(float)
    assert hypervolume(p2, reference=(8, 8)) == pytest.approx(rectangle_sum_2d(p2, np.array([8.0, 8.0])))
    p3 = rng.integers(0, 5, size=(6, 3)).astype(float)
    assert hypervolume(p3, reference=(5, 5, 5)) == pytest.approx(box_count_3d(p3, np.array([5, 5, 5])))


def test_duplicates_and_points_outside_the_reference() -> None:
    pts = np.array([[1.0, 4.0], [2.0, 2.0], [4.0, 1.0]])
    dup = np.vstack([pts, pts[1:2], pts[1:2]])
    assert hypervolume(dup, reference=(5, 5)) == pytest.approx(11.0)
    outside = np.vstack([pts, [[0.0, 6.0]], [[5.0, 0.0]]])  # beyond / on the reference: contribute nothing
    assert hypervolume(outside, reference=(5, 5)) == pytest.approx(11.0)
    assert hypervolume(np.zeros((0, 2)), reference=(5, 5)) == 0.0
    assert hypervolume([[6.0, 6.0]], reference=(5, 5)) == 0.0
    with pytest.raises(InvalidArgumentError, match="not dominated by point 3"):
        hypervolume(outside, reference=(5, 5), require_dominated=True)
    with pytest.raises(InvalidArgumentError, match="strictly above 60"):
        hypervolume([[60.0, 1.0]], reference=(60.0, 4.0), directions=("max", "min"), require_dominated=True)
    assert hypervolume(pts, reference=(5, 5), require_dominated=True) == pytest.approx(11.0)


def test_hypervolume_regret_by_hand() -> None:
    front = np.array([[1.0, 4.0], [2.0, 2.0], [4.0, 1.0]])
    assert hypervolume_regret(front, front=front, reference=(5, 5)) == pytest.approx(0.0)
    assert hypervolume_regret([[2.0, 2.0]], front=front, reference=(5, 5)) == pytest.approx(11.0 - 9.0)
    assert hypervolume_regret([], front=front, reference=(5, 5)) == pytest.approx(11.0)
    # a dominated found point adds only its own box: [3,5]x[3,5] = 4
    assert hypervolume_regret([[3.0, 3.0]], front=front, reference=(5, 5)) == pytest.approx(7.0)


def test_reference_point_is_the_worst_value_pushed_out() -> None:
    pts = np.array([[90.0, 3.0], [80.0, 1.0], [70.0, 2.0]])
    ref = reference_point(pts, directions=("max", "min"), margin=0.1)
    np.testing.assert_allclose(ref, [70.0 - 2.0, 3.0 + 0.2])
    np.testing.assert_allclose(reference_point([[2.0, 5.0]], margin=0.5), [3.0, 7.5])  # no spread: 0.5 x |worst|
    np.testing.assert_allclose(reference_point([[0.0, 0.0]], margin=0.5), [0.5, 0.5])  # ... at least 0.5 x 1
    assert hypervolume(pts, reference=ref, directions=("max", "min"), require_dominated=True) > 0
    with pytest.raises(InvalidArgumentError, match="margin"):
        reference_point(pts, margin=-1)
    with pytest.raises(InvalidArgumentError, match="at least one"):
        reference_point(np.zeros((0, 2)))


# ---------------------------------------------------------------------------------------------- sorting
def test_pareto_ranks_and_nondominated_by_hand() -> None:
    pts = np.array([[1, 4], [2, 2], [4, 1], [3, 3], [4, 4], [2, 2], [5, 5]], dtype=float)
    # (3,3) is dominated by (2,2) only; (4,4) by (3,3); (5,5) by (4,4)
    assert pareto_ranks(pts).tolist() == [0, 0, 0, 1, 2, 0, 3]
    assert nondominated(pts).tolist() == [True, True, True, False, False, True, False]
    assert nondominated(pts, keep_duplicates=False).tolist() == [True, True, True, False, False, False, False]
    # maximising both reverses the order of dominance
    # (5,5) first; then (4,4); then (1,4), (4,1), (3,3); the two (2,2) last
    assert pareto_ranks(pts, directions="max").tolist() == [2, 3, 2, 2, 1, 3, 0]
    assert pareto_ranks(pts, directions=("max", "max")).tolist() == [2, 3, 2, 2, 1, 3, 0]
    assert pareto_ranks(np.zeros((0, 3))).tolist() == [] and nondominated(np.zeros((0, 2))).tolist() == []
    ties = np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 2.0]])  # equal first objective: (1,3) is weakly dominated
    assert pareto_ranks(ties).tolist() == [0, 1, 0]


@pytest.mark.parametrize("bad,match", [
    ([[1.0, np.nan]], r"points\[0, 1\] is nan"),
    ([[1.0, np.inf]], "must be finite"),
    ([1.0, 2.0], "2-D"),
    (np.zeros((2, 2, 2)), "2-D"),
    (np.zeros((2, 0)), "k >= 1"),
    ([["a", "b"]], "array of numbers"),
])
def test_bad_points_are_refused(bad, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        pareto_ranks(bad)
    with pytest.raises(InvalidArgumentError, match=match):
        hypervolume(bad, reference=(1.0, 1.0))


def test_bad_reference_and_directions_are_refused() -> None:
    pts = [[1.0, 2.0]]
    for ref in ((1.0,), (1.0, 2.0, 3.0)):
        with pytest.raises(InvalidArgumentError, match="objectives per point, expected"):
            hypervolume(pts, reference=ref)
    for ref in ((np.nan, 1.0), "ab", 3.0, [[1.0, 2.0]]):
        with pytest.raises(InvalidArgumentError, match="reference"):
            hypervolume(pts, reference=ref)
    for directions in (("max",), ("up", "min"), 3):
        with pytest.raises(InvalidArgumentError, match="directions"):
            hypervolume(pts, reference=(3.0, 3.0), directions=directions)
    with pytest.raises(InvalidArgumentError, match="found has 1 objectives"):
        hypervolume_regret([[1.0]], front=pts, reference=(3.0, 3.0))
    assert check_points([], k=2).shape == (0, 2)


# ---------------------------------------------------------------------------------------------- store objectives
SPACE = SubSpace(((0, 9), (1,), (2, 11, 23)))  # 6 models


@pytest.fixture(scope="module")
def hand_store(tmp_path_factory: pytest.TempPathFactory) -> BloxStore:
    """Six models with hand-picked values: test accuracy, params, a latency table, an extra metric without a
    default direction."""
    path = tmp_path_factory.mktemp("pareto") / "hand.zarr"
    store = BloxStore.create(path, index=SPACE.indices())
    test = np.array([[90.0, 80.0, 80.0, 70.0, 95.0, 60.0], [92.0, 78.0, 80.0, 70.0, 95.0, 62.0]])
    params = np.array([300, 200, 200, 250, 400, 100])
    store.create_run("r", seeds=[0, 1], epochs=2)
    store.write_metric("r", "test_top1", test)
    store.write_metric("r", "val_top1", np.repeat(test[:, :, None], 2, axis=2) - np.array([1.0, 0.0]))
    store.write_metric("r", "train_time_s", np.full((2, 6), 10.0))
    store.write_metric("r", "score", np.arange(12, dtype=float).reshape(2, 6))
    store.write_static(params=params, flops=params * 10)
    store.write_latency("cpu-x", np.array([5.0, 3.0, 3.0, 1.0, 9.0, 2.0]))
    return store


def test_parse_objectives_defaults_overrides_and_aliases(hand_store: BloxStore) -> None:
    objs = parse_objectives(("val_top1", "latency:cpu-x", "params"), store=hand_store)
    assert objs == (Objective("val_top1", "max"), Objective("latency/cpu-x", "min"), Objective("params", "min"))
    assert parse_objectives("test_top1, latency, flops:max", store=hand_store) == (
        Objective("test_top1", "max"), Objective("latency/cpu-x", "min"), Objective("flops", "max"))
    assert parse_objectives(["val_top1@1:min", "train_time_s@1", "latency/cpu-x:max"], store=hand_store) == (
        Objective("val_top1", "min", 1), Objective("train_time_s", "min", 1), Objective("latency/cpu-x", "max"))
    assert parse_objectives([Objective("score", "max")], store=hand_store)[0].name == "score"
    assert str(Objective("val_top1", "max", 2)) == "val_top1@2:max"
    assert [default_direction(c) for c in ("test_top5", "val_loss", "flops", "latency/a", "worker")] == [
        "max", "min", "min", "min", None]


@pytest.mark.parametrize("spec,match", [
    (("accuracy",), r"unknown objective column 'accuracy'.*allowed columns: .*test_top1.*latency/cpu-x"),
    (("score",), "no default direction: write 'score:max' or 'score:min'"),
    (("params@2",), "static column .params. has no epochs"),
    (("test_top1@1",), "no per-epoch values"),
    (("val_top1@3",), r"epoch must be in 1..2"),
    (("val_top1@x",), "integer >= 1"),
    (("latency:gpu",), "unknown objective column 'latency/gpu'"),
    (("val_top1", "val_top1:min"), "more than once"),
    ((), "non-empty"),
    (("",), "empty objective"),
    ((3,), "must be a str"),
])
def test_parse_objectives_refuses_bad_specs(hand_store: BloxStore, spec, match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        parse_objectives(spec, store=hand_store)


def test_objective_dataclass_refuses_bad_fields() -> None:
    with pytest.raises(InvalidArgumentError, match="'max' or 'min'"):
        Objective("val_top1", "up")
    with pytest.raises(InvalidArgumentError, match="epoch"):
        Objective("val_top1", "max", 0)
    with pytest.raises(InvalidArgumentError, match="non-empty str"):
        Objective("", "max")


def test_objective_matrix_is_the_store_in_minimisation_convention(hand_store: BloxStore) -> None:
    objs = parse_objectives(("test_top1", "params", "latency:cpu-x"), store=hand_store)
    m = objective_matrix(hand_store, objs, seed=0)
    np.testing.assert_allclose(m[:, 0], -np.array([90.0, 80.0, 80.0, 70.0, 95.0, 60.0]))
    np.testing.assert_allclose(m[:, 1], [300, 200, 200, 250, 400, 100])
    np.testing.assert_allclose(m[:, 2], [5.0, 3.0, 3.0, 1.0, 9.0, 2.0])
    np.testing.assert_allclose(objective_matrix(hand_store, objs)[:, 0], -np.array([91, 79, 80, 70, 95, 61.0]))
    early = objective_matrix(hand_store, parse_objectives(["val_top1@1"], store=hand_store), seed=0)
    np.testing.assert_allclose(early[:, 0], -(np.array([90.0, 80.0, 80.0, 70.0, 95.0, 60.0]) - 1.0))
    for seed in (None, 7, "random"):
        with pytest.raises(InvalidArgumentError):
            objective_matrix(hand_store, objs, seed=seed)
    with pytest.raises(InvalidArgumentError, match="sequence of Objective"):
        objective_matrix(hand_store, ("test_top1",))


def test_metrics_matrix_reads_evaluations_and_trace_rows() -> None:
    objs = (Objective("val_top1", "max"), Objective("params", "min"))
    rows = [{"val_top1": 90.0, "params": 3.0}, {"metrics": {"val_top1": 80.0, "params": 1.0}}]
    np.testing.assert_allclose(metrics_matrix(rows, objs), [[-90.0, 3.0], [-80.0, 1.0]])
    with pytest.raises(InvalidArgumentError, match="record 0 has no 'params'"):
        metrics_matrix([{"val_top1": 1.0}], objs)


def test_true_front_of_a_hand_store(hand_store: BloxStore) -> None:
    idx = SPACE.indices()
    # seed 0: (test, params) = (90,300) (80,200) (80,200) (70,250) (95,400) (60,100)
    # (70,250) is dominated by (80,200); the two (80,200) are duplicates and both stay
    front = true_front(hand_store, ("test_top1", "params"), seed=0)
    assert front.indices.tolist() == [idx[4], idx[0], idx[1], idx[2], idx[5]]  # best accuracy first
    np.testing.assert_allclose(front.values, [[95, 400], [90, 300], [80, 200], [80, 200], [60, 100]])
    assert front.objectives == (Objective("test_top1", "max"), Objective("params", "min"))
    # with latency instead of params: (60, 2) is dominated by (70, 1); the rest, duplicates included, stay
    lat = true_front(hand_store, "test_top1,latency", seed=0)
    assert lat.indices.tolist() == [idx[4], idx[0], idx[1], idx[2], idx[3]]
    # the front's hypervolume by hand: boxes over reference (50 %, 500 params)
    ref = (50.0, 500.0)
    hv = hypervolume(front.values, reference=ref, directions=front.objectives)
    assert hv == pytest.approx(45 * 100 + 40 * 100 + 30 * 100 + 10 * 100)
    # brute force: every model not dominated by another
    m = objective_matrix(hand_store, front.objectives, seed=0)
    brute = [i for i in range(len(m)) if not any((m[j] <= m[i]).all() and (m[j] < m[i]).any() for j in range(len(m)))]
    assert sorted(front.indices.tolist()) == sorted(idx[brute].tolist())
