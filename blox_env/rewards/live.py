"""``LiveReward``: the reward backend that trains models for real and records every result in a store.

``mode="normal"`` trains the model with the recipe (results in ``runs/live-...``);
``mode="blockwise"`` trains the teacher once, distils the blocks the model needs
(all missing ones in one shared pass), assembles the student and fine-tunes it
with KD (results in ``blockwise/<teacher>/finetune/...``). A model already in the
store is read back instead of retrained (nor is its teacher retrained or its
blocks distilled: their recorded times are what it is charged), so repeats are
free and reproducible, and an interrupted search loses at most the model in
training. ``replay_only=True`` never trains: a result the store does not hold
raises :class:`~blox_env.errors.LiveResultMissingError` naming the teacher and the
model (how a shipped record of a live study is replayed without weights).

Cost: the recorded wall seconds of the model's training (fine-tuning), as for
the tabular backend, plus, the first time a search run needs them, the wall
seconds of training the teacher and of distilling each block (a block is charged
once per search run: a :class:`~blox_env.runs.SearchRun`, or, used directly, per
backend instance or since ``new_run()``). ``close()`` closes the store if the
backend opened it. ``metrics["compute_s"]`` is the
compute this very call spent (0 when the result came from the store). The
fidelity is read from the stored curve (``val_top1`` best within ``fidelity``
epochs) of the full recipe's run, and time scales with ``fidelity / epochs``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from blox_env.costs import static_costs
from blox_env.datasets.store.core import BloxStore
from blox_env.errors import ArchitectureNotFoundError, InvalidArgumentError, LiveResultMissingError
from blox_env.paths import blox_home
from blox_env.rewards.base import BaseReward, Evaluation
from blox_env.runs.budget import SharedCharges, SharedWork, unit_cost
from blox_env.space import FULL_SPACE, Arch, SubSpace, parse_arch
from blox_env.training.distill import DistillConfig, distill_blocks
from blox_env.training.recipes import Recipe, get_recipe, live_run_name
from blox_env.training.results import record_result
from blox_env.training.run_setup import ensure_run
from blox_env.training.train import model_config_for, resolve_device, train_model

__all__ = ["LiveReward", "live_teacher_backends", "open_live_store"]

MODES = ("normal", "blockwise")


def open_live_store(location: str | os.PathLike[str] | BloxStore | None, *, name: str) -> BloxStore:
    """Open (``mode="a"``) or create a store over the whole space for live results."""
    if isinstance(location, BloxStore):
        if location.mode == "r":
            raise InvalidArgumentError("the live reward writes results: open the store with mode='a'")
        return location
    path = Path(location) if location is not None else blox_home() / "stores" / f"{name}.zarr"
    if path.exists():
        return BloxStore.open(path, mode="a")
    return BloxStore.create(path, index=FULL_SPACE.indices(), name=name,
                            provenance={"source": "blox-env live training"})


class LiveReward(BaseReward):
    """Real training behind the reward Protocol (see the module docstring)."""

    source = "live"
    teacher: Arch | None = None

    def __init__(self, *, store: str | os.PathLike[str] | BloxStore | None = None, data: Any = "digits",
                 recipe: str | Recipe = "digits_mini", mode: str = "normal", teacher: Any = None, seed: int = 0,
                 distill: DistillConfig | None = None, ft_epochs: int | None = None, alpha: float = 0.9,
                 temperature: float = 1.0, device: str = "auto", space: SubSpace = FULL_SPACE,
                 progress: bool = False, replay_only: bool = False) -> None:
        from blox_env.datasets.images import ImageData, load_data

        if mode not in MODES:
            raise InvalidArgumentError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.replay_only = bool(replay_only)
        self.data = data if isinstance(data, ImageData) else load_data(str(data), seed=seed)
        self.recipe = get_recipe(recipe)
        self.seed = int(seed)
        self.space = space
        self.device = resolve_device(device)
        self.progress = progress
        # the original trainer's distillation with this recipe's optimiser, batch and augmentation
        self.distill = distill or DistillConfig.from_recipe(self.recipe, seed=self.seed)
        self.alpha, self.temperature = alpha, temperature
        self.ft_recipe = self.recipe.with_(epochs=ft_epochs) if ft_epochs else self.recipe
        self.store = open_live_store(store, name=f"live-{self.data.name}")
        self._owns_store = not isinstance(store, BloxStore)
        self.normal_run = live_run_name(self.recipe, self.data.name, self.seed)
        self.charges = SharedCharges()
        self.library = None
        if mode == "blockwise":
            if teacher is None:
                raise InvalidArgumentError("mode='blockwise' needs teacher= (an arch: index, hash, vector or Arch)")
            from blox_env.training.library import BlockLibrary

            self.library = BlockLibrary(self.store, parse_arch(teacher))
            self.teacher = self.library.teacher
            from blox_env.datasets.store.blockwise import finetune_run_name

            self.ft_run = finetune_run_name(self.library.teacher, self.distill.key, self.ft_recipe.epochs,
                                            alpha=alpha, temperature=temperature, seed=self.seed)
        self.run = self.ft_run if mode == "blockwise" else self.normal_run
        self.max_fidelity = (self.ft_recipe if mode == "blockwise" else self.recipe).epochs
        self.config = model_config_for(self.data, self.recipe)

    # ---------------------------------------------------------------- pieces
    def _stored(self, run: str, arch: Arch) -> bool:
        try:
            return bool(np.isfinite(self.store.get("test_top1", [arch], seed=self.seed, run=run))[0])
        except InvalidArgumentError:
            return False

    def train_normal(self, arch: Arch) -> float:
        """Train ``arch`` normally unless stored; returns the compute seconds spent."""
        ensure_run(self.store, self.normal_run, seeds=[self.seed], recipe=self.recipe, data=self.data,
                   attrs={"kind": "normal"})
        if self._stored(self.normal_run, arch):
            return 0.0
        self._refuse_in_replay(arch, f"normal run {self.normal_run!r}")
        t = time.perf_counter()
        result = train_model(arch, self.data, recipe=self.recipe, seed=self.seed, device=self.device,
                             progress=self.progress)
        record_result(self.store, self.normal_run, result, seed=self.seed)
        return time.perf_counter() - t

    def ensure_teacher(self) -> float:
        """Train and store the teacher unless present; returns the compute seconds spent."""
        assert self.library is not None  # noqa: S101 - internal invariant (mode checked in __init__)
        if self.library.exists:
            return 0.0
        t = time.perf_counter()
        result = train_model(self.library.teacher, self.data, recipe=self.recipe, seed=self.seed,
                             device=self.device, progress=self.progress, keep_weights=True)
        from blox_env.model import BloxModel

        model = BloxModel(self.library.teacher, self.config)
        model.load_state_dict(result.state_dict)
        self.library.save_teacher(model, attrs={"recipe": self.recipe.to_dict(), "data": self.data.name,
                                                "seed": self.seed, "val_top1": result.best_val_top1,
                                                "test_top1": result.test_top1, "train_time_s": result.train_time_s})
        return time.perf_counter() - t

    def ensure_blocks(self, candidates: list[tuple[int, int]]) -> float:
        """Distil the missing candidates in one shared pass; returns the compute seconds spent."""
        assert self.library is not None  # noqa: S101
        missing = self.library.missing(candidates, self.distill)
        if not missing:
            return 0.0
        t = time.perf_counter()
        results = distill_blocks(self.library.teacher_model(), self.data, candidates=missing, config=self.distill,
                                 device=self.device, progress=self.progress)
        for r in results.values():
            self.library.save(r, self.distill)
        return time.perf_counter() - t

    def _block_charge(self, arch: Arch) -> float:
        """Distillation (and teacher) seconds this search run has not been charged yet (marked paid)."""
        work = self.shared_work()
        assert work is not None  # noqa: S101 - blockwise mode only
        items = work.pending(arch, self.charges)
        seconds, _ = work.seconds(items, model=f"{arch.index} (hash {arch.hash}, blocks {arch.blocks})")
        self.charges.commit(items)
        return float(sum(seconds.values()))

    def shared_work(self) -> SharedWork | None:
        """Blockwise mode: the teacher's training and its distilled blocks' recorded seconds (as recorded so far)."""
        if self.library is None:
            return None
        teacher = self.library.teacher
        # the teacher's group attributes (kept without the weights, as in a packaged store)
        try:
            attrs = self.store.teacher_attrs(teacher)
        except ArchitectureNotFoundError:  # nothing recorded for this teacher yet
            attrs = {}
        # an unrecorded teacher time is missing (the missing_cost rule), never free
        return SharedWork(np.asarray(self.library.signatures(self.distill)["distill_time_s"], dtype=np.float64),
                          float(attrs.get("train_time_s", np.nan)), teacher.index,
                          teacher_name=f"model {teacher.index}")

    def _refuse_in_replay(self, arch: Arch, where: str) -> None:
        if self.replay_only:
            teacher = "" if self.teacher is None else f" with teacher {self.teacher.index} (hash {self.teacher.hash})"
            raise LiveResultMissingError(f"no recorded result of model {arch.index} (hash {arch.hash}){teacher} in "
                                         f"{where} of store {self.store.name!r}, and this backend only replays "
                                         "recorded results (replay_only=True): run it live to compute it")

    # ---------------------------------------------------------------- Protocol
    def new_run(self, shared: SharedCharges | None = None) -> None:
        """A new search run pays for the teacher and the blocks again (charged against ``shared``, the run's record)."""
        self.charges = shared if shared is not None else SharedCharges()

    def close(self) -> None:
        """Close the store if this backend opened it (a store passed in stays open)."""
        if self._owns_store:
            self.store.close()
            self._owns_store = False

    def evaluate(self, arch: Arch, fidelity: int | None = None, *, cost_unit: str = "seconds",
                 rng: np.random.Generator | None = None) -> Evaluation:
        e = self.fidelity(fidelity)
        if arch not in self.space:
            raise InvalidArgumentError(f"{arch!r} is outside this backend's space")
        if self.mode == "normal":
            spent = self.train_normal(arch)
            extra = 0.0
        else:
            spent = 0.0
            if not self._stored(self.ft_run, arch):  # a recorded result needs neither the teacher nor the blocks
                from blox_env.training.finetune import finetune

                self._refuse_in_replay(arch, f"fine-tuning run {self.ft_run!r}")
                spent += self.ensure_teacher()
                spent += self.ensure_blocks([(s, b) for s, b in enumerate(arch.blocks)])
                ensure_run(self.store, self.ft_run, seeds=[self.seed], recipe=self.ft_recipe, data=self.data,
                           attrs={"kind": "finetune", "teacher": self.library.teacher.index,  # type: ignore[union-attr]
                                  "distill": self.distill.to_dict(), "alpha": self.alpha,
                                  "temperature": self.temperature})
                t = time.perf_counter()
                result = finetune(arch, self.data, library=self.library, distill=self.distill,  # type: ignore[arg-type]
                                  recipe=self.ft_recipe, seed=self.seed, alpha=self.alpha,
                                  temperature=self.temperature, device=self.device, progress=self.progress)
                record_result(self.store, self.ft_run, result, seed=self.seed)
                spent += time.perf_counter() - t
            extra = self._block_charge(arch)
        get = self.store.get
        metrics = {
            "val_top1": float(get("val_top1", [arch], seed=self.seed, epoch=e, run=self.run)[0]),
            "val_top1_at_epoch": float(get("val_top1", [arch], seed=self.seed, epoch=e, best=False, run=self.run)[0]),
            "test_top1": float(get("test_top1", [arch], seed=self.seed, run=self.run)[0]),
            "train_time_s": float(get("train_time_s", [arch], seed=self.seed, epoch=e, run=self.run)[0]),
            "compute_s": spent,
        }
        cost_static = static_costs(arch, self.config)
        metrics.update(params=float(cost_static.params), flops=float(cost_static.macs))
        cost = float(unit_cost(cost_unit, seconds=metrics["train_time_s"] + extra, epochs=e))
        return Evaluation(arch, metrics, cost, cost_unit, self.source, e, self.seed)


def live_teacher_backends(store: BloxStore, *, device: str = "auto", replay_only: bool = False) -> Any:
    """``(teacher, ft_epochs) -> LiveReward`` fine-tuning with any teacher exactly as ``store``'s blockwise tables do.

    The recipe, data and split, seed, distillation config (the tables' longest), KD ``alpha``/``temperature``
    are read from the tables' description, so a tabulated teacher's results are found under the same run
    names and a new teacher's are computed and recorded beside them. ``store`` must be writable (``mode="a"``)
    and hold the tables' teacher weights (a build folder, not the weight-less bundle); the data are loaded
    once and shared by every backend made. ``replay_only``: read recorded results only (see :class:`LiveReward`);
    the store then needs no weights and may be a copy of a packaged store with the teachers' groups added.
    """
    from blox_env.datasets.images import load_data
    from blox_env.datasets.store.blockwise import BlockwiseTables

    attrs = BlockwiseTables(store).attrs
    seed = int(attrs["seed"])
    data = load_data(str(attrs["data"]), **{"seed": seed, **dict(attrs.get("data_kwargs", {}))})
    recipe = Recipe(**attrs["recipe"])
    distill = DistillConfig.from_dict(attrs["distill"][-1])
    from blox_env.rewards.tabular import space_of_index

    space = space_of_index(store.index)

    def make(teacher: Arch, ft_epochs: int) -> LiveReward:
        return LiveReward(store=store, data=data, recipe=recipe, mode="blockwise", teacher=teacher, seed=seed,
                          distill=distill, ft_epochs=int(ft_epochs), alpha=float(attrs["alpha"]),
                          temperature=float(attrs["temperature"]), device=device, space=space,
                          replay_only=replay_only)

    return make
