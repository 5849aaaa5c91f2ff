"""The BLOX search space: blocks, the :class:`Arch` value object, sub-spaces, search helpers.

Facts (see DESIGN.md): 3 stages, each one searchable block of two ops ``A``, ``B``
from ``conv, mbconv, bconv`` and three connection bits ``prev`` (A->B), ``inp``
(stage input->B), ``sc`` (A added to B's output). A raw stage config is
``[[opA], [opB, prev, inp, sc]]``; of the 72 raw configs 9 are invalid, 63 valid
and 45 unique up to graph isomorphism. The canonical block order is the order in
which the original benchmark first meets each block while enumerating raw configs
as an odometer (opA fastest, then opB, prev, inp, sc), so a model's index is
``b0 + 45*b1 + 2025*b2``. The block tables (``OPS``, ``BLOCKS``, ``BLOCK_GRAPHS``,
``RAW_TO_BLOCK``, ``N_BLOCKS``, ``N_MODELS``, ``N_STAGES``) are computed in :mod:`blox_env.graph`
and re-exported here, their public home; hashes come from :mod:`blox_env.hashes` (one way:
``graph -> hashes -> space``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from blox_env.errors import InvalidArchitectureError, InvalidArgumentError
from blox_env.graph import (
    BLOCK_GRAPHS,
    BLOCKS,
    N_BLOCKS,
    N_MODELS,
    N_STAGES,
    OPS,
    RAW_TO_BLOCK,
    ModelGraph,
    RawConfig,
    model_graph,
    raw_config_index,
    stages_hash,
)
from blox_env.hashes import hash_to_index

__all__ = [
    "BLOCKS",
    "BLOCK_GRAPHS",
    "FULL_SPACE",
    "N_BLOCKS",
    "N_MODELS",
    "N_STAGES",
    "OPS",
    "RAW_TO_BLOCK",
    "Arch",
    "SubSpace",
    "as_indices",
    "block_name",
    "blocks_to_indices",
    "indices_to_blocks",
    "iter_archs",
    "mutate",
    "neighbours",
    "parse_arch",
    "raw_config_index",
    "sample_archs",
]


def block_name(block: int) -> str:
    """Short human-readable description of a canonical block, e.g. ``conv>mbconv+sc``."""
    st = BLOCK_GRAPHS[block]
    names = [OPS[o] for o in st.ops]
    if len(names) == 1:
        return names[0]
    op_a, op_b, prev, inp, sc = BLOCKS[block]
    if not prev:
        return f"{names[0]}||{names[1]}"
    extra = "".join(f"+{flag}" for flag, on in (("inp", inp), ("sc", sc)) if on)
    return f"{OPS[op_a]}>{OPS[op_b]}{extra}"


def indices_to_blocks(indices: Any) -> np.ndarray:
    """Vectorised: model indices ``(N,)`` -> canonical blocks ``(N, 3)``."""
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= N_MODELS):
        raise InvalidArchitectureError(f"model index out of range: allowed 0..{N_MODELS - 1}")
    return np.stack([idx % N_BLOCKS, (idx // N_BLOCKS) % N_BLOCKS, idx // N_BLOCKS**2], axis=-1)


def blocks_to_indices(blocks: Any) -> np.ndarray:
    """Vectorised: canonical blocks ``(N, 3)`` -> model indices ``(N,)``."""
    b = np.asarray(blocks, dtype=np.int64)
    if b.shape[-1:] != (N_STAGES,):
        raise InvalidArchitectureError(f"blocks must have a last axis of {N_STAGES}, got shape {b.shape}")
    if b.size and (b.min() < 0 or b.max() >= N_BLOCKS):
        raise InvalidArchitectureError(f"block id out of range: allowed 0..{N_BLOCKS - 1}")
    return b[..., 0] + N_BLOCKS * b[..., 1] + N_BLOCKS**2 * b[..., 2]


def _as_int(value: Any, what: str, allowed: range) -> int:
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    span = f"{allowed.start}..{allowed.stop - 1}"
    if not isinstance(value, (int, np.integer)):
        raise InvalidArchitectureError(f"{what} must be an integer in {span}, got {value!r}")
    if int(value) not in allowed:
        raise InvalidArchitectureError(f"{what} = {int(value)} out of range: allowed {span}")
    return int(value)


def _parse_stage(stage: Any, s: int) -> RawConfig:
    shape_msg = f"stage {s} must look like [[opA], [opB, prev, inp, sc]], got {stage!r}"
    if isinstance(stage, np.ndarray):
        stage = stage.tolist()
    if not isinstance(stage, (list, tuple)) or len(stage) != 2:
        raise InvalidArchitectureError(shape_msg)
    first, second = stage
    if not isinstance(first, (list, tuple)) or len(first) != 1:
        raise InvalidArchitectureError(shape_msg)
    if not isinstance(second, (list, tuple)) or len(second) != 4:
        raise InvalidArchitectureError(shape_msg)
    op_a = _as_int(first[0], f"stage {s} opA", range(3))
    op_b = _as_int(second[0], f"stage {s} opB", range(3))
    prev, inp, sc = (_as_int(v, f"stage {s} {n}", range(2)) for v, n in zip(second[1:], ("prev", "inp", "sc")))
    return (op_a, op_b, prev, inp, sc)


@dataclass(frozen=True, slots=True)
class Arch:
    """One model of the BLOX space, identified by its canonical block per stage.

    Immutable and hashable. Build with :meth:`from_index`, :meth:`from_blocks`,
    :meth:`from_vec` (any raw config, canonicalised), :meth:`from_hash` or
    :func:`parse_arch` (anything of those).
    """

    blocks: tuple[int, int, int]

    def __post_init__(self) -> None:
        if not isinstance(self.blocks, tuple) or len(self.blocks) != N_STAGES:
            raise InvalidArchitectureError(f"blocks must be a tuple of {N_STAGES} block ids, got {self.blocks!r}")
        for s, b in enumerate(self.blocks):
            _as_int(b, f"stage {s} block", range(N_BLOCKS))
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))

    @classmethod
    def from_index(cls, index: int) -> Arch:
        """The model with canonical index ``index`` (0..91124)."""
        i = _as_int(index, "model index", range(N_MODELS))
        return cls._trusted((i % N_BLOCKS, (i // N_BLOCKS) % N_BLOCKS, i // N_BLOCKS**2))

    @classmethod
    def _trusted(cls, blocks: tuple[int, int, int]) -> Arch:
        """Build from block ids already known to be valid Python ints (hot paths only)."""
        arch = object.__new__(cls)
        object.__setattr__(arch, "blocks", blocks)
        return arch

    @classmethod
    def from_blocks(cls, b0: int, b1: int, b2: int) -> Arch:
        """The model with canonical blocks ``b0, b1, b2`` (each 0..44)."""
        return cls((b0, b1, b2))

    @classmethod
    def from_vec(cls, vec: Any) -> Arch:
        """Canonicalise a raw arch vector ``[[[opA],[opB,prev,inp,sc]]] * 3``."""
        if isinstance(vec, np.ndarray):
            vec = vec.tolist()
        if not isinstance(vec, (list, tuple)) or len(vec) != N_STAGES:
            raise InvalidArchitectureError(f"arch vector must be a list of {N_STAGES} stages, got {vec!r}")
        blocks = []
        for s, stage in enumerate(vec):
            raw = _parse_stage(stage, s)
            block = RAW_TO_BLOCK[raw_config_index(*raw)]
            if block < 0:
                raise InvalidArchitectureError(
                    f"stage {s} config {stage!r} has no path from the stage input to its output "
                    "(prev, inp and sc are all 0): at least one connection bit must be set"
                )
            blocks.append(block)
        return cls(tuple(blocks))  # type: ignore[arg-type]

    @classmethod
    def from_hash(cls, model_hash: str) -> Arch:
        """The model whose benchmark hash is ``model_hash`` (32 lowercase hex digits)."""
        return cls.from_index(hash_to_index(model_hash))

    @property
    def index(self) -> int:
        """Canonical model index ``b0 + 45*b1 + 2025*b2``."""
        b0, b1, b2 = self.blocks
        return b0 + N_BLOCKS * b1 + N_BLOCKS**2 * b2

    @property
    def vec(self) -> list[list[list[int]]]:
        """Canonical raw arch vector ``[[[opA],[opB,prev,inp,sc]]] * 3`` (a fresh list)."""
        return [[[BLOCKS[b][0]], list(BLOCKS[b][1:])] for b in self.blocks]

    @property
    def hash(self) -> str:
        """The original benchmark's model hash (md5 hex of the minimised graph)."""
        return stages_hash([BLOCK_GRAPHS[b] for b in self.blocks])

    def graph(self) -> ModelGraph:
        """Minimised labelled DAG of the whole model."""
        return model_graph([BLOCK_GRAPHS[b] for b in self.blocks])

    def describe(self) -> str:
        """One line: index, blocks and their names."""
        names = ", ".join(block_name(b) for b in self.blocks)
        return f"Arch #{self.index} blocks={self.blocks} [{names}]"

    def __repr__(self) -> str:
        return f"Arch(index={self.index}, blocks={self.blocks})"


def parse_arch(obj: Any) -> Arch:
    """Anything that names a model -> :class:`Arch`.

    Accepts an ``Arch``, an index (int or decimal string), a 32-hex-digit hash,
    a raw arch vector (nested list or its JSON text), or ``"b0,b1,b2"`` block text
    prefixed with ``blocks:``.
    """
    if isinstance(obj, Arch):
        return obj
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, (bool, np.bool_)):
        return Arch.from_index(int(obj))
    if isinstance(obj, (list, tuple, np.ndarray)):
        return Arch.from_vec(obj)
    if isinstance(obj, str):
        text = obj.strip()
        if text.isdigit():
            return Arch.from_index(int(text))
        if text.startswith("blocks:"):
            parts = text[len("blocks:") :].split(",")
            if len(parts) != N_STAGES or not all(p.strip().isdigit() for p in parts):
                raise InvalidArchitectureError(f"block text must be 'blocks:b0,b1,b2', got {obj!r}")
            return Arch(tuple(int(p) for p in parts))  # type: ignore[arg-type]
        if text.startswith("["):
            try:
                vec = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidArchitectureError(f"arch vector text is not valid JSON: {exc}") from exc
            return Arch.from_vec(vec)
        if len(text) == 32 and all(c in "0123456789abcdefABCDEF" for c in text):
            return Arch.from_hash(text.lower())
    raise InvalidArchitectureError(
        f"cannot read an architecture from {obj!r}: give an Arch, an index 0..{N_MODELS - 1}, "
        "a 32-hex-digit model hash, a raw arch vector, or 'blocks:b0,b1,b2'"
    )


def as_indices(archs: Any) -> np.ndarray:
    """Model indices ``(N,)`` of Archs, indices, hashes, raw vectors or an integer numpy array.

    A single model (an Arch, an int, a hash) gives one index. A raw arch vector is itself a
    nested list: wrap it in a list, ``[vec]``. Out-of-range indices raise InvalidArgumentError.
    """
    if isinstance(archs, np.ndarray) and archs.dtype.kind in "iu":
        idx = archs.astype(np.int64, copy=False).reshape(-1)
    elif isinstance(archs, (Arch, str, bytes, int, np.integer)) or not hasattr(archs, "__iter__"):
        idx = np.array([parse_arch(archs).index], dtype=np.int64)  # one model
    else:
        idx = np.fromiter((a.index if isinstance(a, Arch) else parse_arch(a).index for a in archs), dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= N_MODELS):
        raise InvalidArgumentError(f"model index out of range: allowed 0..{N_MODELS - 1}")
    return idx


@dataclass(frozen=True)
class SubSpace:
    """A product sub-space: the allowed canonical blocks of each stage (sorted, distinct).

    ``SubSpace.full()`` is the whole BLOX space. Local coordinates are positions
    in each stage's block list, which is what a ``Discrete(K)`` action picks.
    """

    blocks: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]

    def __post_init__(self) -> None:
        if len(self.blocks) != N_STAGES:
            raise InvalidArchitectureError(f"a sub-space needs {N_STAGES} block lists, got {len(self.blocks)}")
        clean = []
        for s, stage in enumerate(self.blocks):
            ids = tuple(sorted({_as_int(b, f"sub-space stage {s} block", range(N_BLOCKS)) for b in stage}))
            if not ids:
                raise InvalidArchitectureError(f"sub-space stage {s} has no blocks: give at least one of 0..44")
            clean.append(ids)
        object.__setattr__(self, "blocks", tuple(clean))

    @classmethod
    def full(cls) -> SubSpace:
        return cls((tuple(range(N_BLOCKS)),) * N_STAGES)  # type: ignore[arg-type]

    @property
    def sizes(self) -> tuple[int, int, int]:
        return tuple(len(b) for b in self.blocks)  # type: ignore[return-value]

    @property
    def size(self) -> int:
        return int(np.prod(self.sizes))

    def __contains__(self, arch: object) -> bool:
        return isinstance(arch, Arch) and all(b in allowed for b, allowed in zip(arch.blocks, self.blocks))

    def indices(self) -> np.ndarray:
        """Sorted model indices of every member."""
        grid = np.array(list(itertools.product(*reversed(self.blocks))), dtype=np.int64)[:, ::-1]
        return np.sort(blocks_to_indices(grid))

    def arch(self, local: Sequence[int]) -> Arch:
        """Member at local coordinates (position of the block in each stage's list)."""
        if len(local) != N_STAGES:
            raise InvalidArchitectureError(f"local coordinates need {N_STAGES} values, got {local!r}")
        return Arch(tuple(self.blocks[s][_as_int(i, f"stage {s} local block", range(len(self.blocks[s])))]
                          for s, i in enumerate(local)))  # type: ignore[arg-type]

    def local(self, arch: Arch) -> tuple[int, int, int]:
        """Local coordinates of a member."""
        if arch not in self:
            raise InvalidArchitectureError(f"{arch!r} is not in this sub-space")
        return tuple(self.blocks[s].index(b) for s, b in enumerate(arch.blocks))  # type: ignore[return-value]


FULL_SPACE = SubSpace.full()


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def iter_archs(space: SubSpace = FULL_SPACE) -> Iterator[Arch]:
    """Every member of ``space`` in index order."""
    for i in space.indices().tolist():
        yield Arch.from_index(i)


def sample_archs(n: int, *, seed: int | np.random.Generator | None, space: SubSpace = FULL_SPACE,
                 replace: bool = True) -> list[Arch]:
    """``n`` models drawn uniformly from ``space`` (without replacement if ``replace=False``)."""
    count = _as_int(n, "n", range(0, 2**31))
    rng = _rng(seed)
    if not replace and count > space.size:
        raise InvalidArchitectureError(f"cannot draw {count} distinct models from a space of {space.size}")
    if replace:
        cols = [np.asarray(b)[rng.integers(0, len(b), count)] for b in space.blocks]
        return [Arch(tuple(row)) for row in np.stack(cols, axis=1).tolist()]
    picks = rng.choice(space.indices(), size=count, replace=False)
    return [Arch.from_index(int(i)) for i in picks]


def neighbours(arch: Arch, space: SubSpace = FULL_SPACE) -> list[Arch]:
    """All members of ``space`` at edit distance 1 (one stage's block changed)."""
    out = []
    for s in range(N_STAGES):
        for b in space.blocks[s]:
            if b != arch.blocks[s]:
                blocks = list(arch.blocks)
                blocks[s] = b
                out.append(Arch(tuple(blocks)))  # type: ignore[arg-type]
    return out


def mutate(arch: Arch, *, seed: int | np.random.Generator | None, space: SubSpace = FULL_SPACE) -> Arch:
    """A uniformly random neighbour (one stage's block replaced by a different one)."""
    options = neighbours(arch, space)
    if not options:
        raise InvalidArchitectureError("the sub-space has a single model: nothing to mutate to")
    return options[int(_rng(seed).integers(len(options)))]
