"""The search space: canonical blocks, reference hashes, index formula, round trips, errors."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest

from blox_env.errors import ArchitectureNotFoundError, BloxError, InvalidArchitectureError
from blox_env.graph import stage_graph
from blox_env.hashes import all_hashes, hash_to_index
from blox_env.space import (
    BLOCKS,
    N_BLOCKS,
    N_MODELS,
    RAW_TO_BLOCK,
    Arch,
    SubSpace,
    blocks_to_indices,
    indices_to_blocks,
    iter_archs,
    mutate,
    neighbours,
    parse_arch,
    raw_config_index,
    sample_archs,
)

REFERENCE_HASHES = [
    ([[[0], [1, 1, 1, 1]], [[1], [1, 1, 0, 0]], [[0], [0, 1, 1, 0]]], "c3bc16e69893c8ea08f1e89e61f4caa5"),
    ([[[0], [0, 1, 0, 0]]] * 3, "39554afd1b33a44663e653ad10137b9a"),
    ([[[1], [0, 1, 0, 0]], [[0], [0, 1, 0, 0]], [[0], [0, 1, 0, 0]]], "608cbd138efc765f416179ef531470b2"),
    ([[[0], [0, 0, 0, 1]]] * 3, "dab506c8241de5b395c8c25841255782"),
    ([[[2], [2, 1, 1, 1]]] * 3, "8727035c55e96f431cf0268cb2bb878c"),
    ([[[2], [1, 1, 0, 0]], [[1], [0, 0, 1, 1]], [[0], [1, 1, 0, 1]]], "8c0b7ead308c6d62427fbe4b6a9a8426"),
    ([[[1], [0, 0, 1, 1]], [[2], [1, 1, 0, 1]], [[0], [2, 1, 1, 0]]], "025d84172595ad8d68958a67602d36a0"),
    ([[[0], [1, 0, 1, 1]], [[2], [1, 1, 0, 1]], [[0], [2, 1, 1, 0]]], "025d84172595ad8d68958a67602d36a0"),
]


def _expected_blocks() -> list[tuple[int, int, int, int, int]]:
    out = [(i % 3, i // 3, 1, 0, 0) for i in range(9)]
    out += [(0, b, 0, 1, 0) for b in range(3)]
    out += [(i % 3, i // 3, 1, 1, 0) for i in range(9)]
    out += [(i % 3, i // 3, 1, 0, 1) for i in range(9)]
    out += [(0, 0, 0, 1, 1), (1, 0, 0, 1, 1), (2, 0, 0, 1, 1), (1, 1, 0, 1, 1), (2, 1, 0, 1, 1), (2, 2, 0, 1, 1)]
    out += [(i % 3, i // 3, 1, 1, 1) for i in range(9)]
    return out


def test_canonical_block_order_matches_the_original_listing() -> None:
    assert list(BLOCKS) == _expected_blocks()


def test_stage_config_counts() -> None:
    assert len(RAW_TO_BLOCK) == 72
    assert sum(b < 0 for b in RAW_TO_BLOCK) == 9
    assert sum(b >= 0 for b in RAW_TO_BLOCK) == 63
    assert N_BLOCKS == 45 and N_MODELS == 91_125
    valid = 72 - 9
    assert 72**3 == 373_248 and 72**3 - valid**3 == 123_201


@pytest.mark.parametrize(("vec", "expected"), REFERENCE_HASHES)
def test_reference_hashes(vec: list, expected: str) -> None:
    arch = Arch.from_vec(vec)
    assert arch.hash == expected
    assert all_hashes()[arch.index] == expected
    assert Arch.from_hash(expected) == arch


def test_reference_indices() -> None:
    assert Arch.from_index(0).vec == [[[0], [0, 1, 0, 0]]] * 3
    assert Arch.from_index(91124).vec == [[[2], [2, 1, 1, 1]]] * 3
    assert Arch.from_index(50000).vec == REFERENCE_HASHES[5][0]
    assert Arch.from_index(1).hash == "608cbd138efc765f416179ef531470b2"


def test_all_hashes_unique_and_index_formula() -> None:
    hashes = all_hashes()
    assert hashes.shape == (N_MODELS,) and len(set(hashes.tolist())) == N_MODELS
    blocks = indices_to_blocks(np.arange(N_MODELS))
    assert np.array_equal(blocks[:, 0] + 45 * blocks[:, 1] + 2025 * blocks[:, 2], np.arange(N_MODELS))
    assert np.array_equal(blocks_to_indices(blocks), np.arange(N_MODELS))


def test_round_trip_every_model() -> None:
    hashes = all_hashes()
    for i in range(N_MODELS):
        arch = Arch.from_index(i)
        assert Arch.from_vec(arch.vec).index == i
        assert Arch.from_blocks(*arch.blocks).index == i
    for i in np.random.default_rng(0).choice(N_MODELS, 300, replace=False).tolist():
        arch = Arch.from_index(i)
        assert arch.hash == hashes[i]
        assert hash_to_index(arch.hash) == i
        assert parse_arch(arch.hash) == arch


def test_odometer_enumeration_first_seen_order_is_index_order() -> None:
    raw = np.array(RAW_TO_BLOCK)
    # all 72^3 raw archs, stage 0 fastest: position = r0 + 72*r1 + 5184*r2
    r = np.arange(72**3)
    b = np.stack([raw[r % 72], raw[(r // 72) % 72], raw[r // 72**2]], axis=1)
    ok = (b >= 0).all(axis=1)
    assert (~ok).sum() == 123_201
    idx = blocks_to_indices(b[ok])
    _, first = np.unique(idx, return_index=True)
    assert len(first) == N_MODELS
    # the first occurrence of model i comes before the first occurrence of model i+1
    assert np.all(np.diff(first) > 0)


def _nx_stage(raw: tuple[int, ...]) -> nx.DiGraph:
    st = stage_graph(*raw)
    assert st is not None
    g = nx.DiGraph()
    labels = ["in", *st.ops, "out"]
    g.add_nodes_from((i, {"label": lab}) for i, lab in enumerate(labels))
    g.add_edges_from(st.edges)
    return g


def test_isomorphic_raw_configs_share_a_block() -> None:
    valid = [c for c in itertools.product(range(3), range(3), range(2), range(2), range(2))
             if RAW_TO_BLOCK[raw_config_index(*c)] >= 0]
    graphs = {c: _nx_stage(c) for c in valid}
    match = nx.algorithms.isomorphism.categorical_node_match("label", None)
    for c1, c2 in itertools.combinations(valid, 2):
        iso = nx.is_isomorphic(graphs[c1], graphs[c2], node_match=match)
        same = RAW_TO_BLOCK[raw_config_index(*c1)] == RAW_TO_BLOCK[raw_config_index(*c2)]
        assert iso == same, (c1, c2)


def test_isomorphic_vectors_give_one_arch() -> None:
    a = Arch.from_vec([[[1], [0, 0, 1, 1]], [[2], [1, 1, 0, 1]], [[0], [2, 1, 1, 0]]])
    b = Arch.from_vec([[[0], [1, 0, 1, 1]], [[2], [1, 1, 0, 1]], [[0], [2, 1, 1, 0]]])
    assert a == b and hash(a) == hash(b)
    # single op via the shortcut only equals single op fed by the input
    assert Arch.from_vec([[[2], [0, 0, 0, 1]]] * 3) == Arch.from_vec([[[1], [2, 0, 1, 0]]] * 3)


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ([[[0], [0, 0, 0, 0]]] * 3, "no path"),
        ([[[3], [0, 1, 0, 0]]] * 3, "opA"),
        ([[[0], [-1, 1, 0, 0]]] * 3, "opB"),
        ([[[0], [0, 2, 0, 0]]] * 3, "prev"),
        ([[[0], [0, 1, 0, 5]]] * 3, "sc"),
        ([[0, 0, 1, 0, 0]] * 3, "stage 0"),
        ([[[0], [0, 1, 0]]] * 3, "stage 0"),
        ([[[0], [0, 1, 0, 0]]] * 2, "3 stages"),
        ([[[0.5], [0, 1, 0, 0]]] * 3, "integer"),
        ("not an arch", "cannot read"),
        (91125, "out of range"),
        (-1, "out of range"),
        ("[[[0], [0, 1, 0, 0]]", "JSON"),
        ("blocks:1,2", "blocks:"),
    ],
)
def test_bad_architectures_raise(bad: object, needle: str) -> None:
    with pytest.raises(InvalidArchitectureError, match=needle) as info:
        parse_arch(bad)
    assert isinstance(info.value, ValueError) and isinstance(info.value, BloxError)


def test_bad_blocks_and_hashes() -> None:
    with pytest.raises(InvalidArchitectureError, match="block"):
        Arch.from_blocks(0, 45, 0)
    with pytest.raises(InvalidArchitectureError):
        Arch((1, 2))  # type: ignore[arg-type]
    with pytest.raises(ArchitectureNotFoundError, match="no model") as info:
        Arch.from_hash("0" * 32)
    assert isinstance(info.value, KeyError)
    with pytest.raises(InvalidArchitectureError, match="32 hex"):
        Arch.from_hash("abc")
    with pytest.raises(InvalidArchitectureError):
        indices_to_blocks([0, N_MODELS])


def test_parse_arch_forms() -> None:
    arch = Arch.from_index(50000)
    assert parse_arch(arch) is arch
    assert parse_arch(50000) == arch == parse_arch("50000") == parse_arch(np.int64(50000))
    assert parse_arch("blocks:5,31,24") == arch
    assert parse_arch(REFERENCE_HASHES[5][1].upper()) == arch
    assert parse_arch('[[[2],[1,1,0,0]],[[1],[0,0,1,1]],[[0],[1,1,0,1]]]') == arch
    assert parse_arch(np.array(REFERENCE_HASHES[5][0], dtype=object)) == arch


def test_sampling_is_seeded_and_uniform() -> None:
    a = sample_archs(500, seed=3)
    b = sample_archs(500, seed=3)
    assert a == b and a != sample_archs(500, seed=4)
    counts = np.bincount([x.blocks[1] for x in sample_archs(45_000, seed=0)], minlength=45)
    assert counts.min() > 800 and counts.max() < 1200
    distinct = sample_archs(100, seed=1, replace=False)
    assert len(set(distinct)) == 100


def test_neighbours_and_mutation() -> None:
    arch = Arch.from_index(12345)
    nbrs = neighbours(arch)
    assert len(nbrs) == 3 * 44 and len(set(nbrs)) == 3 * 44
    for n in nbrs:
        assert sum(x != y for x, y in zip(n.blocks, arch.blocks)) == 1
    rng = np.random.default_rng(0)
    muts = [mutate(arch, seed=rng) for _ in range(50)]
    assert all(m in nbrs for m in muts)
    assert [mutate(arch, seed=7) for _ in range(3)] == [mutate(arch, seed=7)] * 3


def test_sub_space() -> None:
    sub = SubSpace(((0, 9, 30), (1, 2), (44,)))
    assert sub.size == 6 and sub.sizes == (3, 2, 1)
    members = list(iter_archs(sub))
    assert [m.index for m in members] == sorted(m.index for m in members) and len(members) == 6
    assert all(m in sub for m in members) and Arch.from_index(0) not in sub
    for m in members:
        assert sub.arch(sub.local(m)) == m
    assert all(n in sub for n in neighbours(members[0], sub))
    assert len(neighbours(members[0], sub)) == 2 + 1 + 0
    assert all(a in sub for a in sample_archs(50, seed=0, space=sub))
    with pytest.raises(InvalidArchitectureError, match="no blocks"):
        SubSpace(((0,), (), (1,)))
    with pytest.raises(InvalidArchitectureError, match="not in this sub-space"):
        sub.local(Arch.from_index(0))
    with pytest.raises(InvalidArchitectureError, match="distinct"):
        sample_archs(7, seed=0, space=sub, replace=False)
    assert len(list(iter_archs())) == N_MODELS
