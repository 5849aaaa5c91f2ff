"""Blockwise tables in a store: which teachers, which signatures, which fine-tuning runs (read side, torch-free).

The blockwise builder (:mod:`blox_env.build.blockwise`) writes, under ``blockwise/`` (the
layout is :mod:`.blockwise_tree`'s, read and written through the store's methods):

- ``blockwise/<teacher hash>/``: the block library of each teacher (weights,
  signatures per distillation config) and its fine-tuning runs
  (``finetune/<distill key>-ft<E>-a<alpha>-T<T>-s<seed>``, laid out like ``runs/<name>``);
- the ``tables`` attribute of the ``blockwise`` group: the teachers M1..M5 (index,
  hash, rank and normal accuracy), the normal run they were chosen from, the
  distillation configs (short and full; the fine-tunes use the full one), the
  fine-tuning lengths, and the path of every signature group and fine-tuning run.

:class:`BlockwiseTables` reads that description; tabular blockwise rewards and
``blox study`` go through it, so they work on any store with these tables (the
bundled Blox-mini, or full BLOX built on a GPU cluster with the same builder).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from blox_env.errors import ArchitectureNotFoundError, InvalidArgumentError, StoreError
from blox_env.space import N_BLOCKS, N_STAGES, Arch, parse_arch

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = ["TEACHER_NAMES", "TEACHER_PERCENTILES", "TEACHER_QUANTILES", "TEACHER_RULE", "BlockwiseTables",
           "choose_teachers", "finetune_run_name", "oracle_block_scores", "teacher_ranks"]

TEACHER_NAMES = ("M1", "M2", "M3", "M4", "M5")
#: The teacher rule: M1..M5 are the models at these percentiles of seed-mean normal validation accuracy (100: the
#: best), the paper's "2 from the top performing ones, 1 average, and 2 bad ones".
TEACHER_PERCENTILES = (100.0, 99.0, 50.0, 10.0, 5.0)
#: The same rule as rank quantiles from the top (0: the best model; what the builder's spec records).
TEACHER_QUANTILES = tuple(round(1.0 - p / 100.0, 6) for p in TEACHER_PERCENTILES)
#: The rule as stated in the store's tables and the study report.
TEACHER_RULE = ("M1..M5 = the models at the 100th, 99th, 50th, 10th and 5th percentiles of seed-mean normal "
                "validation top-1 (two from the top, one average, two bad: the paper's choice); a percentile p is "
                "the model at ascending rank round(p / 100 * (n - 1)) of the n models, ties by model index, "
                "pushed to the next rank when two percentiles meet on a tiny store")


def finetune_run_name(teacher: Arch, distill_key: str, ft_epochs: int, *, alpha: float, temperature: float,
                      seed: int) -> str:
    """Store path of the fine-tuning results of one teacher, distillation config and length."""
    return f"blockwise/{teacher.hash}/finetune/{distill_key}-ft{ft_epochs}-a{alpha:g}-T{temperature:g}-s{seed}"


def teacher_ranks(n: int, quantiles: Sequence[float]) -> list[int]:
    """0-based ranks from the top (0: the best of ``n``) of the teachers at rank ``quantiles``, distinct."""
    ranks = [int(round(q * (n - 1))) for q in quantiles]
    for i in range(1, len(ranks)):  # distinct on tiny stores: push forward, then back from the end
        ranks[i] = max(ranks[i], ranks[i - 1] + 1)
    ranks[-1] = min(ranks[-1], n - 1)
    for i in range(len(ranks) - 2, -1, -1):
        ranks[i] = min(ranks[i], ranks[i + 1] - 1)
    return ranks


def choose_teachers(store: BloxStore, *, run: str | None = None, metric: str = "val_top1",
                    quantiles: Sequence[float] = TEACHER_QUANTILES) -> dict[str, dict[str, Any]]:
    """Teachers M1..M5 by :data:`TEACHER_RULE` on the seed-mean ``metric`` of a normal run (best first).

    ``quantiles`` are rank quantiles from the top (default: the rule's percentiles 100, 99, 50, 10, 5).
    Returns ``{"M1": {"index", "hash", "rank", metric, "percentile", "rule_percentile"}, ...}``: ``rank`` is
    1-based from the top (distinct, ties by model index), ``percentile`` the model's own percentile
    (``100 * (n - rank) / (n - 1)``), ``rule_percentile`` the one the rule asked for.
    """
    if len(quantiles) != len(TEACHER_NAMES) or any(not 0.0 <= q <= 1.0 for q in quantiles) \
            or list(quantiles) != sorted(quantiles):
        raise InvalidArgumentError(f"quantiles must be {len(TEACHER_NAMES)} increasing numbers in [0, 1] (best "
                                   f"teacher first), got {list(quantiles)}")
    info = store.run_info(run)
    values = np.nanmean(np.stack([store.get(metric, None, seed=s, run=info.name) for s in info.seeds]), axis=0)
    ok = np.flatnonzero(np.isfinite(values))
    if len(ok) < len(TEACHER_NAMES):
        raise StoreError(f"run {info.name!r} has {len(ok)} models with {metric}; choosing 5 teachers needs 5")
    order = ok[np.lexsort((store.index[ok], -values[ok]))]  # best first, ties by model index
    n = len(order)
    out = {}
    for name, q, r in zip(TEACHER_NAMES, quantiles, teacher_ranks(n, quantiles)):
        arch = Arch.from_index(int(store.index[order[r]]))
        out[name] = {"index": arch.index, "hash": arch.hash, "rank": r + 1, metric: float(values[order[r]]),
                     "percentile": round(100.0 * (n - 1 - r) / (n - 1), 4),
                     "rule_percentile": round(100.0 * (1.0 - q), 4)}
    return out


def oracle_block_scores(store: BloxStore, values: np.ndarray) -> np.ndarray:
    """``[3, 45]``: per stage and block, the best ``values`` (one per store row) of any model using that block.

    The oracle ranking of blocks the paper compares signatures against ("the best accuracy reachable with
    this block in this stage"); NaN for blocks no model of the store uses.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(store),):
        raise InvalidArgumentError(f"values must have one entry per store row ({len(store)}), got {values.shape}")
    from blox_env.space import indices_to_blocks

    blocks = indices_to_blocks(store.index)
    out = np.full((N_STAGES, N_BLOCKS), np.nan)
    for s in range(N_STAGES):
        for b in np.unique(blocks[:, s]):
            sel = values[blocks[:, s] == b]
            if np.isfinite(sel).any():
                out[s, b] = np.nanmax(sel)
    return out


class BlockwiseTables:
    """The blockwise tables of a store (see the module docstring)."""

    def __init__(self, store: BloxStore) -> None:
        self.store = store
        tables = store.read_blockwise_tables()
        if tables is None:
            raise StoreError(f"store {store.name!r} has no blockwise tables: build them with `blox build-blockwise`")
        self.attrs: dict[str, Any] = tables
        self.teachers = {name: Arch.from_index(int(t["index"])) for name, t in self.attrs["teachers"].items()}
        self.ft_epochs: tuple[int, ...] = tuple(int(e) for e in self.attrs["ft_epochs"])
        self.distill_epochs: tuple[int, ...] = tuple(int(c["epochs"]) for c in self.attrs["distill"])
        self.normal_run: str = self.attrs["normal_run"]

    # ---------------------------------------------------------------- names
    def teacher_name(self, teacher: Any) -> str:
        """``"M1"``..``"M5"`` of a teacher given by name or as any arch spec (index, hash, vector, Arch)."""
        if isinstance(teacher, str) and teacher in self.teachers:
            return teacher
        try:
            arch = parse_arch(teacher)
        except Exception as exc:  # noqa: BLE001 - re-raised as a clear message below
            raise InvalidArgumentError(f"teacher must be one of {', '.join(self.teachers)} or an arch of one of "
                                       f"them, got {teacher!r}") from exc
        for name, t in self.teachers.items():
            if t == arch:
                return name
        raise ArchitectureNotFoundError(f"model {arch.index} is not a tabulated teacher; tabulated: "
                                        + ", ".join(f"{n} = {t.index}" for n, t in self.teachers.items()))

    def full_teachers(self) -> list[str]:
        """Teachers fine-tuned over the whole sub-space (not only the 5 x 5 matrix)."""
        return [n for n, runs in self.attrs["finetune_runs"].items() if len(runs) == len(self.ft_epochs)]

    def _path(self, table: str, teacher: Any, length: int | None, default: int, what: str) -> str:
        """Store path of one teacher's entry of a ``tables`` mapping at a length (default: ``default``)."""
        name = self.teacher_name(teacher)
        e = default if length is None else length
        paths = self.attrs[table].get(name, {})
        if str(e) not in paths:
            raise InvalidArgumentError(f"no {what} of length {e!r} for teacher {name}; tabulated lengths: "
                                       f"{', '.join(paths) or 'none'}")
        return str(paths[str(e)])

    def ft_run(self, teacher: Any, ft_epochs: int | None = None) -> str:
        """Run path of the fine-tuning results of a teacher at a length (default: the full length)."""
        return self._path("finetune_runs", teacher, ft_epochs, max(self.ft_epochs), "fine-tuning")

    # ---------------------------------------------------------------- values
    def signatures(self, teacher: Any, distill_epochs: int | None = None) -> dict[str, np.ndarray]:
        """``{distill_loss, lana_delta, distill_time_s}`` as ``[3, 45]`` arrays (NaN = not distilled)."""
        path = self._path("signature_groups", teacher, distill_epochs, max(self.distill_epochs), "signatures")
        return self.store.read_signatures(path, required=True)

    def finetuned(self, teacher: Any, ft_epochs: int | None = None, *, metric: str = "test_top1",
                  epoch: int | None = None) -> np.ndarray:
        """One value per store row of a fine-tuning run (NaN where the model was not fine-tuned)."""
        run = self.ft_run(teacher, ft_epochs)
        seed = self.store.run_info(run).seeds[0]
        return self.store.get(metric, None, seed=seed, epoch=epoch, run=run)

    def normal(self, metric: str = "test_top1", *, seed: int | str = "mean") -> np.ndarray:
        """One value per store row of the normal run the teachers came from (seed mean by default)."""
        info = self.store.run_info(self.normal_run)
        if seed == "mean":
            return np.nanmean(np.stack([self.store.get(metric, None, seed=s, run=info.name) for s in info.seeds]),
                              axis=0)
        return self.store.get(metric, None, seed=seed, run=info.name)

    def matrix(self, metric: str = "test_top1") -> np.ndarray:
        """``[5, 5]``: entry (i, j) is student Mi fine-tuned (full length) with teacher Mj."""
        names = list(self.teachers)
        rows = self.store.rows([self.teachers[n] for n in names])
        out = np.full((len(names), len(names)), np.nan)
        for j, t in enumerate(names):
            out[:, j] = self.finetuned(t, None, metric=metric)[rows]
        return out
