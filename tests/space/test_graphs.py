"""DGL architecture graphs: encoding of reference archs, isomorphism, batched conversion, cached dataset."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("dgl") is None:  # never a bare import
    pytest.skip("needs torch and dgl (the [predictors] extra)", allow_module_level=True)

import torch

from blox_env.datasets.dgl_import import dgl  # quiet: chooses DGL's PyTorch backend before importing it
from blox_env.datasets.graphs import (
    GLOBAL_TYPE,
    N_FEATURES,
    ArchGraphDataset,
    arch_to_graph,
    batch_graphs,
    collate,
)
from blox_env.errors import InvalidArgumentError
from blox_env.graph import NODE_TYPES
from blox_env.space import BLOCK_GRAPHS, N_BLOCKS, N_MODELS, Arch, SubSpace

TYPE_NAMES = (*NODE_TYPES, "global")
SPACE = SubSpace(((0, 5, 9, 30), (1, 12, 36), (2, 21, 44)))


def _types(g: dgl.DGLGraph) -> list[str]:
    feat = g.ndata["feat"]
    assert torch.all(feat.sum(dim=1) == 1) and set(feat.unique().tolist()) <= {0.0, 1.0}
    return [TYPE_NAMES[i] for i in feat.argmax(dim=1).tolist()]


def _edges(g: dgl.DGLGraph) -> list[tuple[int, int]]:
    u, v = g.edges()
    return list(zip(u.tolist(), v.tolist()))


def test_feature_width_is_node_types_plus_global():
    width, global_type = N_FEATURES, GLOBAL_TYPE
    assert width == len(NODE_TYPES) + 1
    assert global_type == len(NODE_TYPES)


def test_reference_arch_zero():
    arch = Arch.from_index(0)
    assert arch.vec == [[[0], [0, 1, 0, 0]]] * 3
    g = arch_to_graph(arch)
    assert g.num_nodes() == 12  # input, 3 x (A, B, R), output + global
    assert _types(g) == ["input", "conv@0", "conv@0", "reduce@0", "conv@1", "conv@1", "reduce@1",
                         "conv@2", "conv@2", "reduce@2", "output", "global"]
    dag = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 8), (8, 9), (9, 10)]
    glob = 11
    expected = dag + [(glob, j) for j in range(11)] + [(j, glob) for j in range(11)] + [(j, j) for j in range(12)]
    assert _edges(g) == expected
    assert g.num_edges() == 10 + 22 + 12
    no_loops = arch_to_graph(arch, self_loops=False)
    assert no_loops.num_edges() == 32 and all(a != b for a, b in _edges(no_loops))


def test_single_op_stage_has_one_op_node():
    # prev=0, inp=1, sc=0: A is off every path and pruned; B alone remains
    arch = Arch.from_vec([[[0], [1, 0, 1, 0]], [[0], [0, 1, 0, 0]], [[2], [2, 0, 1, 0]]])
    g = arch_to_graph(arch)
    assert _types(g) == ["input", "mbconv@0", "reduce@0", "conv@1", "conv@1", "reduce@1",
                         "bconv@2", "reduce@2", "output", "global"]
    assert g.num_nodes() == 10
    assert g.num_edges() == (2 + 3 + 2 + 1) + 2 * 9 + 10
    assert g.in_degrees().min() >= 1  # the global node feeds every node: no zero in-degree even without loops
    assert arch_to_graph(arch, self_loops=False).in_degrees().min() >= 1


def test_global_node_is_last_and_connected_both_ways():
    g = arch_to_graph(Arch.from_blocks(7, 30, 44), self_loops=False)
    n = g.num_nodes()
    last = n - 1
    assert _types(g)[-1] == "global"
    assert sorted(g.successors(last).tolist()) == list(range(last))
    assert sorted(g.predecessors(last).tolist()) == list(range(last))


@pytest.mark.parametrize("vec_a, vec_b", [
    ([[[0], [1, 0, 1, 0]]] * 3, [[[2], [1, 0, 1, 0]]] * 3),  # pruned A: its op does not matter
    ([[[0], [1, 0, 1, 1]]] * 3, [[[1], [0, 0, 1, 1]]] * 3),  # parallel A, B: swapping the ops is isomorphic
])
def test_isomorphic_configs_give_identical_graphs(vec_a, vec_b):
    a, b = Arch.from_vec(vec_a), Arch.from_vec(vec_b)
    assert a == b and a.hash == b.hash
    ga, gb = arch_to_graph(vec_a), arch_to_graph(vec_b)
    assert _edges(ga) == _edges(gb)
    assert torch.equal(ga.ndata["feat"], gb.ndata["feat"])


def test_node_counts_follow_the_pruned_model_graph():
    for b in range(N_BLOCKS):
        g = arch_to_graph(Arch.from_blocks(b, b, b))
        assert g.num_nodes() == 1 + 3 * (len(BLOCK_GRAPHS[b].ops) + 1) + 1 + 1


@pytest.mark.parametrize("self_loops", [True, False])
def test_batched_conversion_equals_per_arch(self_loops):
    rng = np.random.default_rng(3)
    idx = np.concatenate([[0, N_MODELS - 1], rng.integers(0, N_MODELS, 60)])
    batched = batch_graphs(idx, self_loops=self_loops)
    assert batched.batch_size == len(idx)
    for i, g in zip(idx.tolist(), dgl.unbatch(batched)):
        ref = arch_to_graph(Arch.from_index(i), self_loops=self_loops)
        assert _edges(g) == _edges(ref)
        assert torch.equal(g.ndata["feat"], ref.ndata["feat"])
    # any way of naming the models gives the same batch
    again = batch_graphs([Arch.from_index(i) for i in idx.tolist()], self_loops=self_loops)
    assert torch.equal(again.ndata["feat"], batched.ndata["feat"])


def test_whole_space_converts_quickly():
    import time

    start = time.perf_counter()
    g = batch_graphs(np.arange(N_MODELS))
    elapsed = time.perf_counter() - start
    inner = sum(len(st.ops) for st in BLOCK_GRAPHS)
    assert g.batch_size == N_MODELS
    assert g.num_nodes() == N_MODELS * 6 + 3 * N_BLOCKS**2 * inner
    assert elapsed < 30  # about 0.5 s on an idle laptop core; generous for loaded CI machines


def test_bad_inputs_raise():
    with pytest.raises(InvalidArgumentError):
        batch_graphs([])
    with pytest.raises(InvalidArgumentError):
        batch_graphs(np.array([N_MODELS]))
    with pytest.raises(ValueError):
        arch_to_graph([[[0], [0, 0, 0, 0]]] * 3)  # no path through stage 0


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from blox_env.datasets.synthetic import synthetic_store

    path = tmp_path_factory.mktemp("graphs") / "s.zarr"
    return synthetic_store(path, space=SPACE, latency=False)


def test_dataset_cache_round_trip(store, tmp_path, monkeypatch):
    ds = ArchGraphDataset(store, metric="val_top1", cache_dir=tmp_path)
    assert len(ds) == SPACE.size and ds.has_cache()
    np.testing.assert_array_equal(ds.model_indices, store.index)
    np.testing.assert_allclose(ds.targets, store.get("val_top1", seed="mean"))
    g, y = ds[5]
    ref = arch_to_graph(int(ds.model_indices[5]))
    assert _edges(g) == _edges(ref) and torch.equal(g.ndata["feat"], ref.ndata["feat"])
    assert float(y) == pytest.approx(ds.targets[5])

    def boom(self):
        raise AssertionError("process() must not run when the cache is valid")

    monkeypatch.setattr(ArchGraphDataset, "process", boom)
    cached = ArchGraphDataset(store, metric="val_top1", cache_dir=tmp_path)
    monkeypatch.undo()
    np.testing.assert_array_equal(cached.model_indices, ds.model_indices)
    np.testing.assert_array_equal(cached.targets, ds.targets)
    assert cached.graph.batch_size == len(ds)  # batch info restored from the side file
    assert torch.equal(cached.graph.batch_num_edges(), ds.graph.batch_num_edges())
    g2, y2 = cached[len(ds) - 1]
    g1, y1 = ds[len(ds) - 1]
    assert _edges(g2) == _edges(g1) and torch.equal(g2.ndata["feat"], g1.ndata["feat"]) and torch.equal(y1, y2)

    other = ArchGraphDataset(store, metric="test_top1", seed=0, cache_dir=tmp_path)
    assert other.hash != ds.hash
    np.testing.assert_allclose(other.targets, store.get("test_top1", seed=0))


def test_dataset_subset_split_and_batches(store, tmp_path):
    subset = store.index[::3]
    ds = ArchGraphDataset(store, metric="val_top1", indices=subset, cache=False, cache_dir=tmp_path)
    assert len(ds) == len(subset) and not ds.has_cache() and not any(tmp_path.iterdir())
    split = ds.split(sizes=(0.5, 0.25, 0.25), seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(split, ds.split(sizes=(0.5, 0.25, 0.25), seed=1)))
    joined = np.concatenate(split)
    assert len(joined) == len(np.unique(joined)) == len(ds)
    counts = ds.split(sizes=(5, 3, 2), seed=np.random.default_rng(0))
    assert [len(p) for p in counts] == [5, 3, 2]
    graph, y = ds.batch(split.train)
    assert graph.batch_size == len(split.train) and y.shape == (len(split.train),)
    bg, by = collate([ds[int(i)] for i in split.val])
    assert bg.batch_size == len(split.val) and torch.allclose(by, torch.as_tensor(ds.targets[split.val]).float())
    assert len(ds.subset(split.test)) == len(split.test)
    with pytest.raises(InvalidArgumentError):
        ds.split(sizes=(0.8, 0.3, 0.1), seed=0)
    with pytest.raises(InvalidArgumentError):
        ds[len(ds)]
    with pytest.raises(InvalidArgumentError):
        ArchGraphDataset(store, seed=None, cache=False)
