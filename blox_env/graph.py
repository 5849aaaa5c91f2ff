"""Architecture graphs of the BLOX space: stage graphs, the 45 canonical blocks, model DAGs and their hash.

A model is the DAG ``input -> [A_s, B_s -> R_s] x 3 -> output``. Every node not on
an input->output path is removed (minimisation); the hash is the NAS-Bench-101
style iterated md5 over degrees and integer labels, identical bit for bit to the
original benchmark's, because the official data files are keyed by it. The
canonical blocks are the isomorphism classes of the minimised stage graphs; they
live here, below :mod:`blox_env.space` and :mod:`blox_env.hashes`, so both can use
them without importing each other in a cycle (``graph -> hashes -> space``).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "BLOCKS",
    "BLOCK_GRAPHS",
    "INPUT_LABEL",
    "N_BLOCKS",
    "N_MODELS",
    "N_STAGES",
    "NODE_TYPES",
    "OPS",
    "OUTPUT_LABEL",
    "RAW_TO_BLOCK",
    "ModelGraph",
    "StageGraph",
    "graph_hash",
    "model_adjacency",
    "model_graph",
    "node_type_ids",
    "raw_config_index",
    "stage_graph",
    "stages_hash",
]

INPUT_LABEL = -1
OUTPUT_LABEL = -2
#: Op ids 0, 1, 2 of a stage's nodes A and B.
OPS: tuple[str, ...] = ("conv", "mbconv", "bconv")
#: Stages of every model (each followed by a reduction). Public path: :data:`blox_env.space.N_STAGES`.
N_STAGES = 3

#: Node types used for one-hot features: input, output, op x stage, reduction x stage.
NODE_TYPES: tuple[str, ...] = (
    "input",
    "output",
    *(f"{op}@{s}" for s in range(N_STAGES) for op in OPS),
    *(f"reduce@{s}" for s in range(N_STAGES)),
)


class StageGraph(NamedTuple):
    """Minimised graph of one stage; node 0 is the stage input, the last node its reduction.

    ``ops`` holds the op id of each inner node (A and/or B, in that order);
    ``edges`` are (src, dst) pairs over ``[input, *inner, reduction]``.
    """

    ops: tuple[int, ...]
    edges: tuple[tuple[int, int], ...]


class ModelGraph(NamedTuple):
    """Minimised labelled DAG of a whole model (``matrix[i, j] = 1`` for an edge i->j)."""

    matrix: np.ndarray
    labels: tuple[int, ...]


def stage_graph(op_a: int, op_b: int, prev: int, inp: int, sc: int) -> StageGraph | None:
    """Minimise one stage's raw config; ``None`` when no input->reduction path exists.

    Nodes: 0 = stage input, 1 = A, 2 = B, 3 = reduction. A takes the stage input,
    B the sum of A (if ``prev``) and the input (if ``inp``); B feeds the
    reduction, and A does too if ``sc``. Nodes off every path are dropped.
    """
    edges = {(0, 1), (2, 3)}
    if prev:
        edges.add((1, 2))
    if inp:
        edges.add((0, 2))
    if sc:
        edges.add((1, 3))
    forward = _reach(0, edges, reverse=False)
    backward = _reach(3, edges, reverse=True)
    keep = sorted(forward & backward)
    if 3 not in keep:
        return None
    remap = {old: new for new, old in enumerate(keep)}
    kept_edges = tuple(sorted((remap[a], remap[b]) for a, b in edges if a in remap and b in remap))
    ops = tuple({1: op_a, 2: op_b}[n] for n in keep if n in (1, 2))
    return StageGraph(ops=ops, edges=kept_edges)


def _reach(start: int, edges: set[tuple[int, int]], *, reverse: bool) -> set[int]:
    seen = {start}
    frontier = [start]
    while frontier:
        node = frontier.pop()
        for a, b in edges:
            src, dst = (b, a) if reverse else (a, b)
            if src == node and dst not in seen:
                seen.add(dst)
                frontier.append(dst)
    return seen


def model_adjacency(stages: Sequence[StageGraph]) -> tuple[list[int], list[list[int]], list[list[int]]]:
    """Labels, predecessor lists and successor lists of the chained model DAG.

    Node order: input, then per stage its inner nodes and reduction, then output.
    Labels: input -1, output -2, op node ``op + 4 * stage``, reduction ``3 + 4 * stage``.
    """
    labels: list[int] = [INPUT_LABEL]
    edges: list[tuple[int, int]] = []
    stage_in = 0
    for s, st in enumerate(stages):
        base = len(labels) - 1  # local id k >= 1 maps to base + k
        labels.extend(op + 4 * s for op in st.ops)
        labels.append(3 + 4 * s)
        edges.extend((stage_in if a == 0 else base + a, base + b) for a, b in st.edges)
        stage_in = len(labels) - 1
    labels.append(OUTPUT_LABEL)
    edges.append((stage_in, len(labels) - 1))
    preds: list[list[int]] = [[] for _ in labels]
    succs: list[list[int]] = [[] for _ in labels]
    for a, b in edges:
        succs[a].append(b)
        preds[b].append(a)
    return labels, preds, succs


def model_graph(stages: Sequence[StageGraph]) -> ModelGraph:
    """Chain minimised stage graphs into the model DAG with the benchmark's integer labels."""
    labels, _, succs = model_adjacency(stages)
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int8)
    for a, outs in enumerate(succs):
        matrix[a, outs] = 1
    return ModelGraph(matrix=matrix, labels=tuple(labels))


def stages_hash(stages: Sequence[StageGraph]) -> str:
    """Benchmark hash of the model made of these minimised stages (no matrix detour)."""
    labels, preds, succs = model_adjacency(stages)
    out_deg = [float(len(x)) for x in succs]
    in_deg = [float(len(x)) for x in preds]
    return _wl_hash(len(labels), out_deg, in_deg, labels, preds, succs)


def graph_hash(matrix: np.ndarray, labels: Sequence[int]) -> str:
    """NAS-Bench-101 style hash of a labelled DAG (lowercase md5 hex).

    Initial vertex hash: md5 of ``str((out_degree, in_degree, label))`` with the
    degrees as Python floats; then V rounds of ``md5(sorted preds | sorted succs | own)``;
    fingerprint: md5 of ``str(sorted(hashes))``.
    """
    n = len(labels)
    out_deg = matrix.sum(axis=1).astype(float).tolist()
    in_deg = matrix.sum(axis=0).astype(float).tolist()
    preds = [[w for w in range(n) if matrix[w, v]] for v in range(n)]
    succs = [[w for w in range(n) if matrix[v, w]] for v in range(n)]
    return _wl_hash(n, out_deg, in_deg, labels, preds, succs)


def _wl_hash(
    n: int,
    out_deg: Sequence[float],
    in_deg: Sequence[float],
    labels: Sequence[int],
    preds: Sequence[Sequence[int]],
    succs: Sequence[Sequence[int]],
) -> str:
    md5 = hashlib.md5
    hashes = [md5(str((out_deg[v], in_deg[v], labels[v])).encode()).hexdigest() for v in range(n)]
    verts = [(v, preds[v], succs[v]) for v in range(n)]
    for _ in range(n):
        hashes = [
            md5(
                "|".join(("".join(sorted([hashes[w] for w in p])), "".join(sorted([hashes[w] for w in s])), hashes[v]))
                .encode()
            ).hexdigest()
            for v, p, s in verts
        ]
    return md5(str(sorted(hashes)).encode()).hexdigest()


def node_type_ids(graph: ModelGraph) -> np.ndarray:
    """Index into :data:`NODE_TYPES` for every node of a model graph."""
    ids = []
    for lab in graph.labels:
        if lab == INPUT_LABEL:
            ids.append(0)
        elif lab == OUTPUT_LABEL:
            ids.append(1)
        else:
            stage, kind = divmod(lab, 4)
            ids.append(2 + 3 * stage + kind if kind < 3 else 2 + 3 * N_STAGES + stage)
    return np.asarray(ids, dtype=np.int64)



# --------------------------------------------------------------------------- the 45 canonical blocks

RawConfig = tuple[int, int, int, int, int]  # (opA, opB, prev, inp, sc)


def raw_config_index(op_a: int, op_b: int, prev: int, inp: int, sc: int) -> int:
    """Position of a raw stage config in the odometer enumeration (0..71)."""
    return op_a + 3 * op_b + 9 * prev + 18 * inp + 36 * sc


def _stage_key(st: StageGraph) -> str:
    """Isomorphism key of a minimised stage graph (its hash as a stand-alone graph)."""
    n = len(st.ops) + 2
    matrix = np.zeros((n, n), dtype=np.int8)
    for a, b in st.edges:
        matrix[a, b] = 1
    return graph_hash(matrix, (-1, *st.ops, 3))


def _enumerate_blocks() -> tuple[tuple[RawConfig, ...], tuple[StageGraph, ...], tuple[int, ...]]:
    blocks: list[RawConfig] = []
    graphs: list[StageGraph] = []
    seen: dict[str, int] = {}
    raw_to_block: list[int] = []
    for sc, inp, prev, op_b, op_a in itertools.product(range(2), range(2), range(2), range(3), range(3)):
        st = stage_graph(op_a, op_b, prev, inp, sc)
        if st is None:
            raw_to_block.append(-1)
            continue
        key = _stage_key(st)
        if key not in seen:
            seen[key] = len(blocks)
            blocks.append((op_a, op_b, prev, inp, sc))
            graphs.append(st)
        raw_to_block.append(seen[key])
    return tuple(blocks), tuple(graphs), tuple(raw_to_block)


#: The 45 canonical blocks as raw configs ``(opA, opB, prev, inp, sc)``, in canonical order.
#: ``BLOCK_GRAPHS`` holds their minimised stage graphs; ``RAW_TO_BLOCK`` maps each of the 72
#: raw configs (by :func:`raw_config_index`) to its canonical block, or -1 if invalid.
BLOCKS, BLOCK_GRAPHS, RAW_TO_BLOCK = _enumerate_blocks()
N_BLOCKS = len(BLOCKS)
N_MODELS = N_BLOCKS**N_STAGES
