"""The blockwise builder: teachers, block libraries, signatures and fine-tuning tables, resumably, on any executor.

For a store whose normal run is complete, :func:`build_blockwise`:

1. chooses five teachers M1..M5 by normal accuracy (:func:`~blox_env.datasets.store.blockwise.choose_teachers`) and
   retrains each with the run's recipe and seed, keeping the weights (the retrained teacher's
   accuracy is stored in the library's attributes next to the run's);
2. distils every block of the sub-space from the *full* teachers (M1 and M5) at every distillation
   length (one shared pass per teacher and length), and the blocks of M1..M5 from M2, M3, M4 at the
   full length (for the 5 x 5 matrix), as the original trainer does: the recipe's SGD, schedule,
   batch size and training augmentation, each block keeping its best-validation-loss weights
   (:mod:`blox_env.training.distill`); both signatures per teacher, stage, block and length;
3. fine-tunes every model with M1 and M5 at each fine-tuning length (short and full), and each Mi
   with each Mj at the full length (the student/teacher matrix), with per-epoch curves, test
   accuracy and wall time, in the layout of :mod:`blox_env.training.results`.

As in the normal builder, only the driver writes: teachers and distilled blocks as they arrive,
fine-tuning results in small batches (:mod:`.writer`, flushed on an error or Ctrl-C too), so a rerun
after a crash or Ctrl-C redoes only what is missing. Each phase sends its longest tasks first, and a
process pool starts its workers at once, warmed with the training code and the data. Workers read
the teacher weights and the library from the store (read-only). The description of the tables
(``blockwise`` attribute ``tables``) is written first (after every argument is checked) and checked
on reruns. What counts as done is what was written last: a teacher whose weights carry their
description, a distilled block whose signatures are recorded (they follow its weights), a
fine-tuning run whose setup is complete (:func:`~.prepare.prepare_run`); anything a crash left
half-written is redone.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from blox_env.build import benchmark as normal
from blox_env.build.writer import WRITE_EVERY, WRITE_SECONDS, ResultWriter, check_batching
from blox_env.datasets.store.blockwise import TEACHER_NAMES, TEACHER_QUANTILES, choose_teachers, finetune_run_name
from blox_env.datasets.store.core import BloxStore
from blox_env.errors import InvalidArgumentError, StoreError
from blox_env.space import Arch, indices_to_blocks

__all__ = ["BlockwiseReport", "BlockwiseSpec", "BlockwiseTask", "build_blockwise", "run_blockwise_task"]


@dataclass(frozen=True)
class BlockwiseSpec:
    """What to tabulate. Lengths are in epochs; the last distillation length is the one fine-tunes use.

    Distillation takes the recipe's optimiser, batch size and augmentation (``distill_*`` override them;
    ``distill_optimizer="adam"`` and ``distill_augment=False`` are the comparison settings)."""

    recipe: Any = "digits_mini"
    data: str = "digits"
    data_kwargs: tuple[tuple[str, Any], ...] = (("seed", 0),)
    normal_run: str | None = None
    seed: int = 0
    distill_epochs: tuple[int, ...] = (2, 10)
    ft_epochs: tuple[int, ...] = (1, 8)
    full_teachers: tuple[str, ...] = ("M1", "M5")
    quantiles: tuple[float, ...] = TEACHER_QUANTILES
    alpha: float = 0.9
    temperature: float = 1.0
    distill_loss: str = "nsr"
    distill_optimizer: str = "sgd"  # "sgd": the recipe's SGD + schedule; "adam": Adam, constant rate (comparison)
    distill_augment: bool = True  # the recipe's training augmentation (as the original --blockwise path)
    distill_lr: float | None = None  # None: the recipe's (SGD) or 1e-3 (Adam)
    distill_batch_size: int | None = None  # None: the recipe's

    def __post_init__(self) -> None:
        for name in ("distill_epochs", "ft_epochs"):
            v = getattr(self, name)
            if not v or any(not isinstance(e, int) or e < 1 for e in v) or list(v) != sorted(set(v)):
                raise InvalidArgumentError(f"{name} must be increasing positive integers, got {v!r}")
        bad = [t for t in self.full_teachers if t not in TEACHER_NAMES]
        if bad or not self.full_teachers:
            raise InvalidArgumentError(f"full_teachers must name some of {', '.join(TEACHER_NAMES)}, got {bad}")
        if self.distill_optimizer not in ("sgd", "adam") or not isinstance(self.distill_augment, bool):
            raise InvalidArgumentError(f"distill_optimizer must be 'sgd' or 'adam' and distill_augment a bool, got "
                                       f"{self.distill_optimizer!r}, {self.distill_augment!r}")
        if self.distill_lr is not None and not (isinstance(self.distill_lr, int | float) and self.distill_lr > 0):
            raise InvalidArgumentError(f"distill_lr must be None (the recipe's) or positive, got {self.distill_lr!r}")
        bs = self.distill_batch_size
        if bs is not None and (not isinstance(bs, int) or isinstance(bs, bool) or bs < 1):
            raise InvalidArgumentError(f"distill_batch_size must be None (the recipe's) or a positive integer, "
                                       f"got {bs!r}")

    def distill_configs(self) -> list[Any]:
        """One :class:`~blox_env.training.distill.DistillConfig` per length, with the recipe's optimiser,
        batch size and augmentation (:meth:`~blox_env.training.distill.DistillConfig.from_recipe`)."""
        from blox_env.training.distill import DistillConfig

        return [DistillConfig.from_recipe(self.recipe, epochs=e, loss=self.distill_loss, seed=self.seed,
                                          optimizer=self.distill_optimizer, augment=self.distill_augment,
                                          lr=self.distill_lr, batch_size=self.distill_batch_size)
                for e in self.distill_epochs]


@dataclass(frozen=True)
class BlockwiseTask:
    """One unit of work for a worker: train a teacher, distil a set of blocks, or fine-tune one model."""

    kind: str  # "teacher" | "distill" | "finetune"
    store: str
    teacher: int
    spec: BlockwiseSpec
    distill: Any = None  # DistillConfig
    candidates: tuple[tuple[int, int], ...] = ()
    arch: int = -1
    ft_epochs: int = 0


class BlockwiseReport(NamedTuple):
    """What a build call did (counts of tasks run in each phase, and seconds)."""

    store: str
    teachers: dict[str, int]
    trained_teachers: int
    distill_passes: int
    finetuned: int
    seconds: float


def warm_blockwise_worker(data: str, kwargs: tuple[tuple[str, Any], ...], shipped: str | None = None) -> None:
    """Pool-worker start-up: import the training, distillation and fine-tuning code and take the data
    (as :func:`~blox_env.build.benchmark.warm_worker`)."""
    import blox_env.training.distill
    import blox_env.training.finetune
    import blox_env.training.library  # noqa: F401 - the imports are the warm-up

    normal.warm_worker(data, kwargs, shipped)


def task_cost(task: BlockwiseTask) -> int:
    """A rough relative cost of a task (convolutions x epochs), to send the longest first within a phase."""
    if task.kind == "teacher":
        return normal.estimated_cost(task.teacher)
    if task.kind == "distill":
        layers = normal.block_layers()
        return task.distill.epochs * sum(layers[b] for _, b in task.candidates)
    return task.ft_epochs * normal.estimated_cost(task.arch)


def run_blockwise_task(task: BlockwiseTask) -> tuple[Any, str]:
    """Worker side: do one task; returns its result and ``host:pid``."""
    import os
    import socket

    from blox_env.training.recipes import get_recipe

    spec = task.spec
    recipe = get_recipe(spec.recipe)
    data = normal.cached_data(spec.data, spec.data_kwargs)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    if task.kind == "teacher":
        from blox_env.training.train import train_model

        return train_model(Arch.from_index(task.teacher), data, recipe=recipe, seed=spec.seed, device="cpu",
                           keep_weights=True), worker
    from blox_env.training.library import BlockLibrary

    library = BlockLibrary(BloxStore.open(task.store), Arch.from_index(task.teacher))
    if task.kind == "distill":
        import torch

        from blox_env.training.distill import distill_blocks

        return distill_blocks(library.teacher_model(), data, candidates=task.candidates, config=task.distill,
                              device=torch.device("cpu")), worker
    from blox_env.training.finetune import finetune

    return finetune(Arch.from_index(task.arch), data, library=library, distill=task.distill,
                    recipe=recipe.with_(epochs=task.ft_epochs), seed=spec.seed, alpha=spec.alpha,
                    temperature=spec.temperature, device="cpu"), worker


def describe_tables(store: BloxStore, spec: BlockwiseSpec) -> dict[str, Any]:
    """The ``tables`` attribute: teachers, configs and every signature group / fine-tuning run path."""
    from blox_env.training.recipes import get_recipe

    info = store.run_info(spec.normal_run)
    teachers = choose_teachers(store, run=info.name, quantiles=spec.quantiles)
    configs = spec.distill_configs()
    full = configs[-1]
    sig_groups: dict[str, dict[str, str]] = {}
    ft_runs: dict[str, dict[str, str]] = {}
    for name, t in teachers.items():
        arch = Arch.from_index(t["index"])
        lengths = configs if name in spec.full_teachers else [full]
        sig_groups[name] = {str(c.epochs): f"blockwise/{arch.hash}/signatures/{c.key}" for c in lengths}
        ft_lengths = spec.ft_epochs if name in spec.full_teachers else (max(spec.ft_epochs),)
        ft_runs[name] = {str(e): finetune_run_name(arch, full.key, e, alpha=spec.alpha, temperature=spec.temperature,
                                                   seed=spec.seed) for e in ft_lengths}
    return {"teachers": teachers, "normal_run": info.name, "recipe": get_recipe(spec.recipe).to_dict(),
            "data": spec.data, "data_kwargs": dict(spec.data_kwargs), "seed": spec.seed,
            "distill": [c.to_dict() for c in configs], "ft_epochs": list(spec.ft_epochs),
            "full_teachers": list(spec.full_teachers), "alpha": spec.alpha, "temperature": spec.temperature,
            "spec": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items() if k != "recipe"},
            "signature_groups": sig_groups, "finetune_runs": ft_runs}


def _tables_attr(store: BloxStore, spec: BlockwiseSpec) -> dict[str, Any]:
    """Write the description on first build; on reruns check that it matches ``spec``."""
    want = describe_tables(store, spec)  # first: a bad normal run or spec is refused before anything is written
    have = store.read_blockwise_tables()
    if have is not None:
        keys = ("teachers", "distill", "ft_epochs", "full_teachers", "alpha", "temperature", "recipe", "seed")
        diff = [k for k in keys if _jsonish(have.get(k)) != _jsonish(want[k])]
        if diff:
            raise StoreError(f"store {store.location} already holds blockwise tables built differently "
                             f"({', '.join(diff)} differ): build into a copy of the store")
        want["build"] = have.get("build", {})
        return want
    want["build"] = {"provenance": normal.run_provenance(), "seconds": {}}
    store.write_blockwise_tables(want)
    return want


def _jsonish(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value))


def _teacher_saved(lib: Any) -> bool:
    """The teacher's weights exist and carry their tensor names (written after the values)."""
    return bool(lib.store.has_teacher(lib.teacher, complete=True))


def _missing_blocks(lib: Any, candidates: list[tuple[int, int]], config: Any) -> list[tuple[int, int]]:
    """Candidates not distilled yet: no weights, or no signatures (recorded after the weights; absent = NaN)."""
    done = np.isfinite(lib.signatures(config)["distill_time_s"])
    return [(s, b) for s, b in candidates if not (lib.has(s, b, config) and done[s, b])]


def _tasks(store: BloxStore, spec: BlockwiseSpec, tables: dict[str, Any], kind: str) -> Iterator[BlockwiseTask]:
    """The unfinished tasks of one phase."""
    from blox_env.training.library import BlockLibrary
    from blox_env.training.results import finished_mask

    loc = str(store.location)
    teachers = {n: Arch.from_index(t["index"]) for n, t in tables["teachers"].items()}
    configs = spec.distill_configs()
    sub_blocks = indices_to_blocks(store.index)
    mini_blocks = sorted({(s, b) for t in teachers.values() for s, b in enumerate(t.blocks)})
    for name, arch in teachers.items():
        lib = BlockLibrary(store, arch)
        full = name in spec.full_teachers
        if kind == "teacher" and not _teacher_saved(lib):
            yield BlockwiseTask("teacher", loc, arch.index, spec)
        elif kind == "distill":
            want = sorted({(s, int(b)) for s in range(3) for b in np.unique(sub_blocks[:, s])}) if full \
                else mini_blocks
            for cfg in configs if full else configs[-1:]:
                missing = _missing_blocks(lib, want, cfg)
                if missing:
                    yield BlockwiseTask("distill", loc, arch.index, spec, cfg, tuple(missing))
        elif kind == "finetune":
            models = store.index if full else np.array(sorted(t.index for t in teachers.values()))
            for e_str, run in tables["finetune_runs"][name].items():
                done = finished_mask(store, run, spec.seed)[store.rows(models)]
                for i in models[~done]:
                    yield BlockwiseTask("finetune", loc, arch.index, spec, configs[-1], arch=int(i),
                                        ft_epochs=int(e_str))


def build_blockwise(store: str | Path, *, spec: BlockwiseSpec | None = None, executor: str = "serial",
                    jobs: int = 2, address: str | None = None, progress: bool = True,
                    write_every: int = WRITE_EVERY, write_seconds: float = WRITE_SECONDS) -> BlockwiseReport:
    """Build (or finish) the blockwise tables of a store opened for writing (see the module docstring);
    fine-tuning results are written at most ``write_every`` at a time, about ``write_seconds`` apart."""
    from blox_env.build.executors import check_executor, make_executor
    from blox_env.build.prepare import prepare_run
    from blox_env.datasets.store.location import is_blox_store
    from blox_env.model import BloxModel
    from blox_env.training.library import BlockLibrary
    from blox_env.training.recipes import get_recipe
    from blox_env.training.train import model_config_for

    spec = spec or BlockwiseSpec()
    if not isinstance(spec, BlockwiseSpec):
        raise InvalidArgumentError(f"spec must be a BlockwiseSpec, got {type(spec).__name__}")
    path = Path(store).expanduser()
    if not path.is_dir():
        raise InvalidArgumentError(f"the blockwise builder writes into a store folder; {path} is not one "
                                   "(unzip a packaged store first)")
    if not is_blox_store(path):
        raise StoreError(f"{path} is not a blox store: build the normal run first (blox build)")
    check_executor(executor, jobs=jobs)
    check_batching(write_every, write_seconds)
    recipe = get_recipe(spec.recipe)
    data = normal.cached_data(spec.data, spec.data_kwargs)
    config = model_config_for(data, recipe)
    data_spec = {"data": data.name, "kwargs": dict(spec.data_kwargs)}
    st = BloxStore.open(path, mode="a")
    tables = _tables_attr(st, spec)
    counts = {"teacher": 0, "distill": 0, "finetune": 0}
    seconds: dict[str, float] = dict(tables["build"].get("seconds", {}))
    start = time.perf_counter()
    files = contextlib.ExitStack()  # the data file the pool workers read at start-up, removed at the end
    shipped = files.enter_context(normal.shipped_data(data, enabled=executor == "process"))
    ex = make_executor(executor, jobs=jobs, address=address,
                       warm=partial(warm_blockwise_worker, spec.data, spec.data_kwargs, shipped))
    try:
        for phase in ("teacher", "distill", "finetune"):
            if phase == "finetune":
                for name, runs in tables["finetune_runs"].items():
                    for e_str, run in runs.items():
                        prepare_run(st, run, seeds=[spec.seed], recipe=recipe.with_(epochs=int(e_str)), data=data,
                                    data_spec=data_spec,
                                    attrs={"kind": "finetune", "teacher": tables["teachers"][name]["index"],
                                           "teacher_name": name, "distill": tables["distill"][-1],
                                           "alpha": spec.alpha, "temperature": spec.temperature})
            todo = sorted(_tasks(st, spec, tables, phase), key=lambda t: -task_cost(t))  # longest first
            if not todo:
                continue
            t0 = time.perf_counter()
            bar = _bar(phase, len(todo), progress)
            try:
                with ResultWriter(st, every=write_every, seconds=write_seconds) as writer:
                    for task, (result, _worker) in ex.map_unordered(run_blockwise_task, todo):
                        lib = BlockLibrary(st, Arch.from_index(task.teacher)) if phase != "finetune" else None
                        if phase == "teacher":
                            model = BloxModel(lib.teacher, config)
                            model.load_state_dict(result.state_dict)
                            lib.save_teacher(model, attrs={"recipe": recipe.to_dict(), "data": data.name,
                                                           "seed": spec.seed, "val_top1": result.best_val_top1,
                                                           "test_top1": result.test_top1,
                                                           "train_time_s": result.train_time_s})
                        elif phase == "distill":
                            for r in result.values():
                                lib.save(r, task.distill)
                        else:
                            run = tables["finetune_runs"][_name_of(tables, task.teacher)][str(task.ft_epochs)]
                            writer.add(run, result, seed=spec.seed)
                        counts[phase] += 1
                        bar.update(1)
            finally:
                bar.close()
            seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - t0
            tables["build"]["seconds"] = seconds
            st.write_blockwise_tables(tables)
    finally:
        ex.close()
        files.close()
    st.close()  # records the per-array checksums of everything written
    teachers = {n: int(t["index"]) for n, t in tables["teachers"].items()}
    return BlockwiseReport(str(path), teachers, counts["teacher"], counts["distill"], counts["finetune"],
                           time.perf_counter() - start)


def _name_of(tables: dict[str, Any], teacher_index: int) -> str:
    return next(n for n, t in tables["teachers"].items() if int(t["index"]) == teacher_index)


def _bar(phase: str, total: int, enabled: bool) -> Any:
    from blox_env.progress import ProgressBar

    return ProgressBar(total, description=f"blockwise {phase} (tasks)", enabled=enabled,
                       refresh_per_second=normal.BAR_REFRESH)
