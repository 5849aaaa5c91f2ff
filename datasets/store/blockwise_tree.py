"""The ``blockwise/`` tree of a :class:`~blox_env.datasets.store.core.BloxStore`: teachers, block library, signatures.

Layout (written by the blockwise builder and the live blockwise reward, read by
:class:`~blox_env.datasets.store.blockwise.BlockwiseTables` and the block library)::

    blockwise/                                 attrs: tables (the description, see .blockwise)
      <teacher hash>/                          attrs: teacher_index, model_config, recipe, seed, accuracy, ...
        teacher                                teacher weights (flat float32, see FlatWeights)
        library/<distill key>/s<stage>_b<block>   one distilled block; group attrs: config
        signatures/<distill key>/{distill_loss, lana_delta, distill_time_s}[3, 45]   NaN = not distilled
        finetune/<ft key>/...                  fine-tuning results, laid out like runs/<name> (store runs)

Weights are one flat float32 array per module with the tensor names, shapes and
dtypes in its attributes (written last: an array without names is a torn write),
never pickles, so loading cannot execute code. This module is torch-free; the
block library (:mod:`blox_env.training.library`) converts to and from state dicts.
Block-library arrays carry no checksums (only benchmark tables do).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from blox_env.datasets.store.integrity import corrupt, guard
from blox_env.errors import ArchitectureNotFoundError, InvalidArgumentError
from blox_env.space import N_BLOCKS, N_STAGES, Arch

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = ["SIGNATURE_NAMES", "BlockwiseTreeMixin", "FlatWeights"]

#: The signature arrays of a distillation config, ``[3, 45]`` each (stage, block).
SIGNATURE_NAMES = ("distill_loss", "lana_delta", "distill_time_s")
_SIG_SHAPE = (N_STAGES, N_BLOCKS)


class FlatWeights(NamedTuple):
    """A module's weights as stored: one flat float32 vector and each tensor's name, shape and dtype."""

    values: np.ndarray
    names: list[str]
    shapes: list[list[int]]
    dtypes: list[str]


class BlockwiseTreeMixin:
    """Reads and writes of the ``blockwise/`` tree (a mixin of BloxStore; see the module docstring)."""

    # ------------------------------------------------------------------ the tables description
    def read_blockwise_tables(self: BloxStore) -> dict[str, Any] | None:
        """The ``tables`` attribute of ``blockwise/`` (None when no tables were described)."""
        node = self._node("blockwise")
        if node is None:
            return None
        with guard(self.location, "metadata of 'blockwise'"):
            tables = node.attrs.get("tables")
        return None if tables is None else dict(tables)

    def write_blockwise_tables(self: BloxStore, tables: Mapping[str, Any]) -> None:
        """Write (replace) the ``tables`` attribute of ``blockwise/``."""
        self.check_writable()
        self._group.require_group("blockwise").attrs["tables"] = dict(tables)

    # ------------------------------------------------------------------ teachers
    @staticmethod
    def teacher_path(teacher: Arch) -> str:
        """Group of one teacher's library: ``blockwise/<teacher hash>``."""
        return f"blockwise/{teacher.hash}"

    def has_teacher(self: BloxStore, teacher: Arch, *, complete: bool = False) -> bool:
        """Whether the teacher's weights exist (``complete``: and carry their tensor names, written last)."""
        node = self._node(f"{self.teacher_path(teacher)}/teacher")
        if node is None or not complete:
            return node is not None
        with guard(self.location, f"metadata of the weights of teacher {teacher.index}"):
            return "names" in node.attrs

    def teacher_attrs(self: BloxStore, teacher: Arch) -> dict[str, Any]:
        """Attributes of a teacher's group (index, model config, recipe, accuracy, training time, ...)."""
        path = self.teacher_path(teacher)
        node = self._node(path)
        if node is None:
            raise ArchitectureNotFoundError(f"no teacher {teacher.index} ({teacher.hash}) in store {self.name!r}")
        with guard(self.location, f"metadata of {path!r}"):
            return dict(node.attrs)

    def write_teacher(self: BloxStore, teacher: Arch, weights: FlatWeights | None, *, attrs: Mapping[str, Any]) -> None:
        """Record a teacher: its group's attributes (plus ``teacher_index``), then its weights if given."""
        self.check_writable()
        if weights is not None:
            _check_weights(weights, f"teacher {teacher.index}")  # refused before anything is written
        grp = self._group.require_group(self.teacher_path(teacher))
        grp.attrs.update({"teacher_index": teacher.index, **attrs})
        if weights is not None:
            _write_weights(grp, "teacher", weights, None)

    def read_teacher(self: BloxStore, teacher: Arch) -> FlatWeights:
        """The teacher's stored weights."""
        return self._read_weights(f"{self.teacher_path(teacher)}/teacher", f"teacher {teacher.index}")

    # ------------------------------------------------------------------ the block library
    @staticmethod
    def block_path(teacher: Arch, config_key: str, stage: int, block: int) -> str:
        """Array of one distilled block: ``blockwise/<teacher>/library/<config key>/s<stage>_b<block>``."""
        return f"blockwise/{teacher.hash}/library/{config_key}/s{stage}_b{block}"

    def has_block(self: BloxStore, teacher: Arch, config_key: str, stage: int, block: int) -> bool:
        """Whether a distilled block's weights exist."""
        return self._node(self.block_path(teacher, config_key, stage, block)) is not None

    def write_block(self: BloxStore, teacher: Arch, config_key: str, stage: int, block: int, weights: FlatWeights,
                    *, config: Mapping[str, Any], attrs: Mapping[str, Any] | None = None) -> None:
        """Store one distilled block (overwrites); ``config`` (the distillation config) goes on its group."""
        self.check_writable()
        _check_weights(weights, f"block {block} of stage {stage}")  # refused before anything is written
        grp = self._group.require_group(f"blockwise/{teacher.hash}/library/{config_key}")
        grp.attrs.update({"config": dict(config)})
        _write_weights(grp, f"s{stage}_b{block}", weights, attrs)

    def read_block(self: BloxStore, teacher: Arch, config_key: str, stage: int, block: int) -> FlatWeights:
        """A distilled block's stored weights."""
        return self._read_weights(self.block_path(teacher, config_key, stage, block),
                                  f"block {block} of stage {stage} (config {config_key}, teacher {teacher.index})")

    def _read_weights(self: BloxStore, path: str, what: str) -> FlatWeights:
        node = self._node(path)
        if node is None or not hasattr(node, "chunks"):
            raise ArchitectureNotFoundError(f"no weights of {what} in store {self.name!r}")
        with guard(self.location, f"array {path!r}"):
            attrs = dict(node.attrs)
            values = np.asarray(node[...], dtype=np.float32)
            names, shapes, dtypes = list(attrs["names"]), [list(s) for s in attrs["shapes"]], list(attrs["dtypes"])
        described = sum(int(np.prod(s)) if s else 1 for s in shapes)
        if described != values.size or not len(names) == len(shapes) == len(dtypes):
            raise corrupt(self.location, f"array {path!r}",
                          f"{values.size} values, their names describe {described}")
        return FlatWeights(values, names, shapes, dtypes)

    # ------------------------------------------------------------------ signatures
    @staticmethod
    def signatures_path(teacher: Arch, config_key: str) -> str:
        """Group of one teacher's signatures under a distillation config."""
        return f"blockwise/{teacher.hash}/signatures/{config_key}"

    def write_signature(self: BloxStore, path: str, stage: int, block: int, values: Mapping[str, float]) -> None:
        """Record the signatures of one block (the arrays are created all-NaN on first use)."""
        self.check_writable()
        grp = self._group.require_group(path)
        for name, value in values.items():
            _check_signature_name(name)
            if name not in grp:
                arr = grp.create_array(name, shape=_SIG_SHAPE, dtype="float64", fill_value=np.nan, chunks=_SIG_SHAPE)
            else:
                arr = grp[name]
            arr[stage, block] = value

    def write_signatures(self: BloxStore, path: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Write whole ``[3, 45]`` signature arrays (replacing any stored ones)."""
        self.check_writable()
        self._group.require_group(path)
        for name, values in arrays.items():
            _check_signature_name(name)
            v = np.asarray(values, dtype=np.float64)
            if v.shape != _SIG_SHAPE:
                raise InvalidArgumentError(f"signature {name!r} must have shape {_SIG_SHAPE}, got {v.shape}")

            def build(target: str, v: np.ndarray = v) -> None:  # beside the old array, then swapped in (.swap)
                arr = self._group.create_array(target, shape=_SIG_SHAPE, dtype="float64", fill_value=np.nan,
                                               chunks=_SIG_SHAPE, overwrite=True)
                arr[...] = v

            self._build_and_swap(f"{path}/{name}", build)
            self._nodes.pop(f"{path}/{name}", None)

    def read_signatures(self: BloxStore, path: str, *, required: bool = False) -> dict[str, np.ndarray]:
        """``{distill_loss, lana_delta, distill_time_s}`` as ``[3, 45]`` float64 arrays (NaN = not distilled).

        An absent group or array reads as all NaN (nothing distilled yet), unless ``required`` (a group the
        tables describe), where it is damage (:class:`~blox_env.errors.StoreCorruptError`).
        """
        out = {}
        for name in SIGNATURE_NAMES:
            node = self._node(f"{path}/{name}")
            if node is None:
                if required:
                    raise corrupt(self.location, f"signatures {path!r}", f"the array {name!r} is missing")
                out[name] = np.full(_SIG_SHAPE, np.nan)
                continue
            with guard(self.location, f"array '{path}/{name}'"):
                out[name] = np.asarray(node[...], dtype=np.float64)
        return out


def _check_signature_name(name: str) -> None:
    if name not in SIGNATURE_NAMES:
        raise InvalidArgumentError(f"signature must be one of {', '.join(SIGNATURE_NAMES)}, got {name!r}")


def _check_weights(weights: FlatWeights, what: str) -> None:
    """Refuse weights whose tensor descriptions do not cover their values exactly."""
    size = np.asarray(weights.values).size
    described = sum(int(np.prod(s)) if s else 1 for s in weights.shapes)
    if described != size or not len(weights.names) == len(weights.shapes) == len(weights.dtypes):
        raise InvalidArgumentError(f"weights of {what}: {size} values, the tensor names describe {described}")


def _write_weights(group: Any, name: str, weights: FlatWeights, attrs: Mapping[str, Any] | None) -> None:
    """One flat float32 array; the tensor names, shapes and dtypes go last (they mark the write complete)."""
    flat = np.asarray(weights.values).reshape(-1)
    arr = group.create_array(name, shape=flat.shape, dtype="float32", chunks=(max(len(flat), 1),), overwrite=True)
    arr[...] = flat.astype(np.float32)
    arr.attrs.update({"names": list(weights.names), "shapes": [list(s) for s in weights.shapes],
                      "dtypes": list(weights.dtypes), **(attrs or {})})
