"""Architecture graphs for DGL: one model -> one ``DGLGraph``, all 91,125 models in seconds.

Encoding (BRP-NAS style). Nodes are the minimised model DAG of
:func:`blox_env.graph.model_graph` (input, per stage its op nodes and reduction,
output; pruned nodes are absent) followed by ONE global node, always the last
node of each graph. Edges, in this order: the DAG edges (forward direction,
row-major), global -> every other node, every other node -> global, and, when
``self_loops=True`` (the default, what a GCN with ``norm="both"`` expects),
one self-loop per node. Node feature ``feat`` (float32) is the one-hot of the
node type over :data:`blox_env.graph.NODE_TYPES` (op x stage, reduction x stage,
input, output) plus one extra ``global`` type: ``N_FEATURES = len(NODE_TYPES) + 1``.

Isomorphic raw configs canonicalise to one :class:`~blox_env.space.Arch`, so they
get identical graphs. :func:`batch_graphs` assembles a batched graph from the 45
per-block templates with numpy (no Python loop over models), which is what
makes converting the whole space take seconds.

:class:`ArchGraphDataset` is a ``dgl.data.DGLDataset`` over a store's models with
one metric as the target. It holds all its models as ONE batched graph (items are
sliced out with ``dgl.slice_batch``; unbatching 91,125 graphs would take longer
than building them) and caches it with ``dgl.save_graphs`` plus a numpy ``.npz``
side file (model indices, targets, per-graph node/edge counts), because
``save_graphs`` drops batch information.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from blox_env.datasets.dgl_import import dgl
from blox_env.errors import InvalidArgumentError
from blox_env.graph import NODE_TYPES, model_graph, node_type_ids
from blox_env.space import BLOCK_GRAPHS, N_BLOCKS, N_STAGES, Arch, as_indices, indices_to_blocks, parse_arch

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = [
    "GLOBAL_TYPE",
    "N_FEATURES",
    "ArchGraphDataset",
    "DatasetSplit",
    "arch_to_graph",
    "batch_graphs",
    "collate",
]

#: Type id of the global node (one past the last of NODE_TYPES).
GLOBAL_TYPE = len(NODE_TYPES)
#: Width of the one-hot node feature ``feat``.
N_FEATURES = len(NODE_TYPES) + 1
_CACHE_FORMAT = 1


def arch_to_graph(arch: Any, *, self_loops: bool = True) -> dgl.DGLGraph:
    """The DGL graph of one model (see the module docstring for the encoding).

    Built straight from :func:`blox_env.graph.model_graph`, independently of the
    template path of :func:`batch_graphs`, so the two can check each other.
    """
    a = arch if isinstance(arch, Arch) else parse_arch(arch)
    mg = model_graph([BLOCK_GRAPHS[b] for b in a.blocks])
    types = np.append(node_type_ids(mg), GLOBAL_TYPE)
    n = len(types)
    g_id = n - 1
    src, dst = np.nonzero(mg.matrix)  # row-major: sorted by (src, dst)
    others = np.arange(g_id)
    parts_src = [src, np.full(g_id, g_id), others]
    parts_dst = [dst, others, np.full(g_id, g_id)]
    if self_loops:
        parts_src.append(np.arange(n))
        parts_dst.append(np.arange(n))
    u = torch.from_numpy(np.concatenate(parts_src).astype(np.int64))
    v = torch.from_numpy(np.concatenate(parts_dst).astype(np.int64))
    g = dgl.graph((u, v), num_nodes=n, idtype=torch.int64)
    g.ndata["feat"] = _one_hot(types)
    return g


def _one_hot(types: np.ndarray) -> torch.Tensor:
    out = torch.zeros((len(types), N_FEATURES), dtype=torch.float32)
    out[torch.arange(len(types)), torch.from_numpy(np.asarray(types, dtype=np.int64))] = 1.0
    return out


class _Templates(NamedTuple):
    """Per-block pieces: inner-node count, padded local edges, inner node types per stage."""

    n_inner: np.ndarray  # (45,) ops kept (1 or 2)
    edge_src: np.ndarray  # (45, E) local ids over [stage input, *inner, reduction]
    edge_dst: np.ndarray
    edge_ok: np.ndarray  # (45, E) bool
    op_types: np.ndarray  # (3, 45, 2) NODE_TYPES ids of the inner ops (padded)


def _build_templates() -> _Templates:
    max_e = max(len(st.edges) for st in BLOCK_GRAPHS)
    n_inner = np.array([len(st.ops) for st in BLOCK_GRAPHS], dtype=np.int64)
    src = np.zeros((N_BLOCKS, max_e), dtype=np.int64)
    dst = np.zeros((N_BLOCKS, max_e), dtype=np.int64)
    ok = np.zeros((N_BLOCKS, max_e), dtype=bool)
    op_types = np.zeros((N_STAGES, N_BLOCKS, 2), dtype=np.int64)
    for b, st in enumerate(BLOCK_GRAPHS):
        for k, (a, c) in enumerate(st.edges):  # already sorted by (src, dst)
            src[b, k], dst[b, k], ok[b, k] = a, c, True
        for s in range(N_STAGES):
            for k, op in enumerate(st.ops):
                op_types[s, b, k] = NODE_TYPES.index(("conv", "mbconv", "bconv")[op] + f"@{s}")
    return _Templates(n_inner, src, dst, ok, op_types)


_TEMPLATES: _Templates | None = None


def _templates() -> _Templates:
    global _TEMPLATES  # built once per process, on first use
    if _TEMPLATES is None:
        _TEMPLATES = _build_templates()
    return _TEMPLATES


def batch_graphs(archs: Any, *, self_loops: bool = True) -> dgl.DGLGraph:
    """One batched graph of many models (same encoding and edge order as :func:`arch_to_graph`).

    Vectorised over models: each stage contributes its block's template edges
    shifted by the stage's node offset, so no per-model Python work is done.
    ``dgl.unbatch`` recovers the per-model graphs.
    """
    t = _templates()
    blocks = indices_to_blocks(as_indices(archs))
    n_models = len(blocks)
    if n_models == 0:
        raise InvalidArgumentError("archs is empty: give at least one model")
    rows = np.arange(n_models)[:, None]
    # node layout per model: 0 = input, stage s occupies base_s+1 .. base_s+k_s+1 (reduction last), output, global
    k = t.n_inner[blocks]  # (N, 3)
    base = np.zeros((n_models, N_STAGES + 1), dtype=np.int64)
    base[:, 1:] = np.cumsum(k + 1, axis=1)
    n_nodes = base[:, -1] + 3
    max_n = int(n_nodes.max())
    g_id = n_nodes - 1

    # node types, padded to max_n, then masked
    types = np.full((n_models, max_n), -1, dtype=np.int64)
    types[:, 0] = NODE_TYPES.index("input")
    for s in range(N_STAGES):
        b = blocks[:, s]
        for j in range(2):
            has = k[:, s] > j
            types[rows[has, 0], base[has, s] + 1 + j] = t.op_types[s, b[has], j]
        types[rows[:, 0], base[:, s + 1]] = NODE_TYPES.index(f"reduce@{s}")
    types[rows[:, 0], base[:, -1] + 1] = NODE_TYPES.index("output")
    types[rows[:, 0], g_id] = GLOBAL_TYPE
    node_ok = np.arange(max_n)[None, :] < n_nodes[:, None]

    # edges, padded per model: stage templates | output edge | global out | global in | self-loops
    cols_src = []
    cols_dst = []
    cols_ok = []
    for s in range(N_STAGES):
        b = blocks[:, s]
        cols_src.append(base[:, s : s + 1] + t.edge_src[b])
        cols_dst.append(base[:, s : s + 1] + t.edge_dst[b])
        cols_ok.append(t.edge_ok[b])
    cols_src.append(base[:, -1:])
    cols_dst.append(base[:, -1:] + 1)
    cols_ok.append(np.ones((n_models, 1), dtype=bool))
    others = np.broadcast_to(np.arange(max_n - 1)[None, :], (n_models, max_n - 1))
    other_ok = others < g_id[:, None]
    gcol = np.broadcast_to(g_id[:, None], others.shape)
    cols_src += [gcol, others]
    cols_dst += [others, gcol]
    cols_ok += [other_ok, other_ok]
    if self_loops:
        every = np.broadcast_to(np.arange(max_n)[None, :], (n_models, max_n))
        cols_src.append(every)
        cols_dst.append(every)
        cols_ok.append(node_ok)
    e_src = np.concatenate(cols_src, axis=1)
    e_dst = np.concatenate(cols_dst, axis=1)
    e_ok = np.concatenate(cols_ok, axis=1)
    offsets = np.concatenate([[0], np.cumsum(n_nodes)[:-1]])[:, None]
    u = torch.from_numpy((e_src + offsets)[e_ok])
    v = torch.from_numpy((e_dst + offsets)[e_ok])
    g = dgl.graph((u, v), num_nodes=int(n_nodes.sum()), idtype=torch.int64)
    g.ndata["feat"] = _one_hot(types[node_ok])
    g.set_batch_num_nodes(torch.from_numpy(n_nodes))
    g.set_batch_num_edges(torch.from_numpy(e_ok.sum(axis=1).astype(np.int64)))
    return g


def collate(samples: Sequence[tuple[dgl.DGLGraph, torch.Tensor]]) -> tuple[dgl.DGLGraph, torch.Tensor]:
    """``collate_fn`` for a ``torch.utils.data.DataLoader`` over :class:`ArchGraphDataset`."""
    graphs, targets = zip(*samples)
    return dgl.batch(list(graphs)), torch.stack(list(targets))


class DatasetSplit(NamedTuple):
    """Positions (into the dataset) of the train / validation / test parts."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


class ArchGraphDataset(dgl.data.DGLDataset):
    """Graphs of a store's models with one metric as the target, cached on disk.

    ``metric`` is anything ``store.get`` accepts (``val_top1``, ``test_top1``,
    ``params``, ``latency/cpu``...); ``seed="mean"`` (default) averages the run's
    seeds, as predictor benchmarks do; ``indices`` restricts to a subset (default:
    every row of the store). Models whose target is NaN are dropped unless
    ``drop_missing=False``. ``cache_dir`` defaults to ``$BLOX_HOME/graphs``;
    ``cache=False`` keeps everything in memory. The cache key covers the store's
    location, name, size and provenance, the query and the subset; pass
    ``force_reload=True`` after rewriting a store in place.
    """

    def __init__(self, store: BloxStore, *, metric: str = "val_top1", seed: int | str | None = "mean",
                 epoch: int | None = None, run: str | None = None, indices: Any = None, self_loops: bool = True,
                 drop_missing: bool = True, cache: bool = True, cache_dir: str | os.PathLike[str] | None = None,
                 force_reload: bool = False, verbose: bool = False) -> None:
        if seed is None:
            raise InvalidArgumentError("seed=None would draw targets at random: give a seed of the run or 'mean'")
        self._store = store
        self._query = {"metric": metric, "seed": seed, "epoch": epoch, "run": run}
        self._subset = None if indices is None else as_indices(indices)
        self._self_loops = bool(self_loops)
        self._drop_missing = bool(drop_missing)
        self._cache = bool(cache)
        if cache_dir is None:
            from blox_env.paths import blox_home

            cache_dir = blox_home() / "graphs"
        subset_digest = "all" if self._subset is None else hashlib.sha1(self._subset.tobytes()).hexdigest()
        key = json.dumps({"format": _CACHE_FORMAT, "location": str(store.location), "name": store.name,
                          "rows": len(store), "provenance": store.attrs.get("provenance"), **self._query,
                          "subset": subset_digest, "self_loops": self._self_loops, "drop": self._drop_missing},
                         sort_keys=True, default=str)
        self.graph: dgl.DGLGraph | None = None  # every model, as one batched graph
        self.model_indices = np.zeros(0, dtype=np.int64)
        self.targets = np.zeros(0, dtype=np.float64)
        super().__init__(name=f"blox-graphs-{_slug(store.name)}-{_slug(metric)}", hash_key=(key,),
                         raw_dir=str(cache_dir), save_dir=str(cache_dir), force_reload=force_reload, verbose=verbose)

    # DGLDataset hooks -----------------------------------------------------------
    def process(self) -> None:
        """Read targets from the store and convert the models to graphs."""
        idx = self._store.index if self._subset is None else self._subset
        y = self._store.get(self._query["metric"], np.asarray(idx, dtype=np.int64), seed=self._query["seed"],
                            epoch=self._query["epoch"], run=self._query["run"])
        keep = ~np.isnan(y) if self._drop_missing else np.ones(len(y), dtype=bool)
        self.model_indices = np.asarray(idx, dtype=np.int64)[keep]
        self.targets = np.asarray(y, dtype=np.float64)[keep]
        self.graph = batch_graphs(self.model_indices, self_loops=self._self_loops) if keep.any() else None

    @property
    def _graph_file(self) -> Path:
        return Path(self.save_path + f"_{self.hash}.bin")

    @property
    def _info_file(self) -> Path:
        return Path(self.save_path + f"_{self.hash}_info.npz")

    def has_cache(self) -> bool:
        """True when both cache files of this exact configuration exist."""
        return self._cache and self._graph_file.is_file() and self._info_file.is_file()

    def save(self) -> None:
        """Write the batched graph (``dgl.save_graphs``) and the per-graph info (``.npz``, no pickle).

        ``save_graphs`` keeps one big graph but drops its batch information, so the
        per-graph node and edge counts go to the side file with indices and targets.
        """
        if not self._cache or self.graph is None:
            return
        self._graph_file.parent.mkdir(parents=True, exist_ok=True)
        tmp_graphs = self._graph_file.with_suffix(".bin.tmp")
        dgl.save_graphs(str(tmp_graphs), [self.graph])
        tmp_info = self._info_file.with_name(self._info_file.name + ".tmp.npz")
        np.savez(tmp_info, model_indices=self.model_indices, targets=self.targets,
                 batch_num_nodes=self.graph.batch_num_nodes().numpy(),
                 batch_num_edges=self.graph.batch_num_edges().numpy(), key=np.array(self._hash_key[0]))
        os.replace(tmp_graphs, self._graph_file)
        os.replace(tmp_info, self._info_file)

    def load(self) -> None:
        """Read the cache files back (checks they belong to this configuration)."""
        with np.load(self._info_file, allow_pickle=False) as info:
            if str(info["key"]) != self._hash_key[0]:
                raise InvalidArgumentError(f"graph cache {self._info_file} belongs to another configuration")
            self.model_indices = np.asarray(info["model_indices"], dtype=np.int64)
            self.targets = np.asarray(info["targets"], dtype=np.float64)
            num_nodes = torch.from_numpy(np.asarray(info["batch_num_nodes"], dtype=np.int64))
            num_edges = torch.from_numpy(np.asarray(info["batch_num_edges"], dtype=np.int64))
        (graph,), _ = dgl.load_graphs(str(self._graph_file))
        if graph.num_nodes() != int(num_nodes.sum()) or len(num_nodes) != len(self.model_indices):
            raise InvalidArgumentError(f"graph cache {self._graph_file} does not match its info file")
        graph.set_batch_num_nodes(num_nodes)
        graph.set_batch_num_edges(num_edges)
        self.graph = graph

    # access ---------------------------------------------------------------------
    def __getitem__(self, i: int) -> tuple[dgl.DGLGraph, torch.Tensor]:
        """``(graph, target)`` of the ``i``-th model (target as a float32 scalar tensor)."""
        if not isinstance(i, (int, np.integer)) or not -len(self) <= int(i) < len(self):
            raise InvalidArgumentError(f"dataset position must be an integer in 0..{len(self) - 1}, got {i!r}")
        g = dgl.slice_batch(self.graph, int(i) % len(self))
        if self._transform is not None:
            g = self._transform(g)
        return g, torch.tensor(self.targets[int(i)], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.model_indices)

    def batch(self, positions: Sequence[int] | np.ndarray) -> tuple[dgl.DGLGraph, torch.Tensor]:
        """``(batched graph, float32 targets)`` of many positions at once (faster than a DataLoader)."""
        pos = np.asarray(positions, dtype=np.int64)
        if pos.size == 0 or pos.min() < 0 or pos.max() >= len(self):
            raise InvalidArgumentError(f"positions must be a non-empty list of integers in 0..{len(self) - 1}")
        return (batch_graphs(self.model_indices[pos], self_loops=self._self_loops),
                torch.from_numpy(self.targets[pos].astype(np.float32)))

    @property
    def archs(self) -> list[Arch]:
        """The models, in dataset order."""
        return [Arch.from_index(i) for i in self.model_indices.tolist()]

    def split(self, *, sizes: Sequence[float] = (0.8, 0.1, 0.1), seed: int | np.random.Generator) -> DatasetSplit:
        """Seeded random train / val / test positions.

        ``sizes`` are three fractions summing to at most 1, or three counts
        summing to at most ``len(self)``; what is left over belongs to no part.
        """
        if len(sizes) != 3 or any((not isinstance(s, (int, float, np.integer, np.floating))) or s < 0 for s in sizes):
            raise InvalidArgumentError(f"sizes must be three non-negative fractions or counts, got {sizes!r}")
        n = len(self)
        if all(isinstance(s, (int, np.integer)) for s in sizes):
            counts = [int(s) for s in sizes]
        elif sum(sizes) <= 1.0 + 1e-9:
            counts = [int(round(float(s) * n)) for s in sizes]
            counts[0] = min(counts[0], n - counts[1] - counts[2])
        else:
            raise InvalidArgumentError(f"fractional sizes must sum to at most 1, got {sum(sizes):g}")
        if sum(counts) > n:
            raise InvalidArgumentError(f"sizes ask for {sum(counts)} models, the dataset has {n}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        perm = rng.permutation(n)
        a, b = counts[0], counts[0] + counts[1]
        return DatasetSplit(np.sort(perm[:a]), np.sort(perm[a:b]), np.sort(perm[b : b + counts[2]]))

    def subset(self, positions: Sequence[int] | np.ndarray) -> dgl.data.utils.Subset:
        """A view of some positions (e.g. one part of :meth:`split`) usable with a DataLoader."""
        return dgl.data.utils.Subset(self, [int(p) for p in positions])


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:40] or "store"
