"""The block library: distilled blocks, their signatures and the teacher, inside a BloxStore.

Layout under ``blockwise/<teacher hash>/`` (attrs: teacher index, recipe, data, seed, val accuracy)::

    teacher                                   teacher weights (flat float32, see below)
    library/<distill key>/s<stage>_b<block>   one distilled block (Stage: block + reduction)
    signatures/<distill key>/{distill_loss, lana_delta, distill_time_s}[3, 45]   NaN = not distilled
    finetune/<ft key>/...                     fine-tuning results, laid out like runs/<name>

Weights are stored as one flat float32 array per module with the tensor names,
shapes and dtypes in its attributes, never as pickles: loading cannot execute code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from blox_env.errors import ArchitectureNotFoundError, InvalidArgumentError, StoreError
from blox_env.model import BloxModel, ModelConfig, Stage
from blox_env.space import N_BLOCKS, N_STAGES, Arch
from blox_env.training.distill import DistillConfig, DistillResult

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = ["BlockLibrary", "load_state", "save_state"]

SIGNATURES = ("distill_loss", "lana_delta", "distill_time_s")


def save_state(group: Any, name: str, state: dict[str, torch.Tensor], attrs: dict[str, Any] | None = None) -> None:
    """Write a state dict as one flat float32 array with names/shapes/dtypes in its attributes."""
    names = list(state)
    flat = np.concatenate([state[k].detach().cpu().double().reshape(-1).numpy() for k in names]) if names else \
        np.zeros(0)
    arr = group.create_array(name, shape=flat.shape, dtype="float32", chunks=(max(len(flat), 1),), overwrite=True)
    arr[...] = flat.astype(np.float32)
    arr.attrs.update({"names": names, "shapes": [list(state[k].shape) for k in names],
                      "dtypes": [str(state[k].dtype).replace("torch.", "") for k in names], **(attrs or {})})


def load_state(array: Any) -> dict[str, torch.Tensor]:
    """Inverse of :func:`save_state`."""
    attrs = dict(array.attrs)
    flat = torch.from_numpy(np.asarray(array[...], dtype=np.float32))
    out, pos = {}, 0
    for name, shape, dtype in zip(attrs["names"], attrs["shapes"], attrs["dtypes"]):
        n = int(np.prod(shape)) if shape else 1
        out[name] = flat[pos : pos + n].reshape(shape).to(getattr(torch, dtype)).clone()
        pos += n
    if pos != flat.numel():
        raise StoreError(f"stored weights {array.path} have {flat.numel()} values, their names describe {pos}")
    return out


class BlockLibrary:
    """Distilled blocks of one teacher in a store (opened for writing to add blocks)."""

    def __init__(self, store: BloxStore, teacher: Arch) -> None:
        self.store = store
        self.teacher = teacher
        self.key = f"blockwise/{teacher.hash}"

    # ------------------------------------------------------------------ teacher
    @property
    def exists(self) -> bool:
        return self.key in self.store._group and "teacher" in self.store._group[self.key]  # noqa: SLF001

    def save_teacher(self, model: BloxModel, *, attrs: dict[str, Any]) -> None:
        """Store the trained teacher's weights and provenance (recipe, data, seed, accuracy)."""
        self.store._check_writable()  # noqa: SLF001
        grp = self.store._group.require_group(self.key)  # noqa: SLF001
        grp.attrs.update({"teacher_index": self.teacher.index, "teacher_blocks": list(self.teacher.blocks),
                          "model_config": vars(model.config), **attrs})
        save_state(grp, "teacher", model.state_dict())

    @property
    def attrs(self) -> dict[str, Any]:
        if not self.exists:
            raise ArchitectureNotFoundError(f"no teacher {self.teacher.index} ({self.teacher.hash}) in this store")
        return dict(self.store._group[self.key].attrs)  # noqa: SLF001

    def teacher_model(self) -> BloxModel:
        """The teacher with its stored weights (eval mode)."""
        cfg = ModelConfig(**self.attrs["model_config"])
        model = BloxModel(self.teacher, cfg)
        model.load_state_dict(load_state(self.store._group[f"{self.key}/teacher"]))  # noqa: SLF001
        return model.eval()

    # ------------------------------------------------------------------ blocks
    def _block_path(self, stage: int, block: int, config: DistillConfig) -> str:
        return f"{self.key}/library/{config.key}/s{stage}_b{block}"

    def has(self, stage: int, block: int, config: DistillConfig) -> bool:
        return self._block_path(stage, block, config) in self.store._group  # noqa: SLF001

    def missing(self, candidates: list[tuple[int, int]], config: DistillConfig) -> list[tuple[int, int]]:
        return [c for c in candidates if not self.has(*c, config)]

    def save(self, result: DistillResult, config: DistillConfig) -> None:
        """Store a distilled block and its signatures (overwrites the same key)."""
        self.store._check_writable()  # noqa: SLF001
        grp = self.store._group.require_group(f"{self.key}/library/{config.key}")  # noqa: SLF001
        grp.attrs.update({"config": config.to_dict()})
        save_state(grp, f"s{result.stage}_b{result.block}", result.state_dict,
                   {"distill_loss": result.distill_loss, "lana_delta": result.lana_delta,
                    "train_time_s": result.train_time_s, "val_losses": result.val_losses})
        sig = self.store._group.require_group(f"{self.key}/signatures/{config.key}")  # noqa: SLF001
        for name, value in zip(SIGNATURES, (result.distill_loss, result.lana_delta, result.train_time_s)):
            if name not in sig:
                arr = sig.create_array(name, shape=(N_STAGES, N_BLOCKS), dtype="float64", fill_value=np.nan,
                                       chunks=(N_STAGES, N_BLOCKS))
            else:
                arr = sig[name]
            arr[result.stage, result.block] = value

    def load_stage(self, stage: int, block: int, config: DistillConfig) -> Stage:
        """The distilled block (with its reduction) as a module with the stored weights."""
        path = self._block_path(stage, block, config)
        if path not in self.store._group:  # noqa: SLF001
            raise ArchitectureNotFoundError(
                f"block {block} of stage {stage} is not distilled for config {config.key} of this teacher"
            )
        cfg = ModelConfig(**self.attrs["model_config"])
        module = Stage(block, cfg.channels(stage))
        module.load_state_dict(load_state(self.store._group[path]))  # noqa: SLF001
        return module

    def signatures(self, config: DistillConfig) -> dict[str, np.ndarray]:
        """``{distill_loss, lana_delta, distill_time_s}`` as ``[3, 45]`` arrays (NaN where not distilled)."""
        path = f"{self.key}/signatures/{config.key}"
        if path not in self.store._group:  # noqa: SLF001
            return {name: np.full((N_STAGES, N_BLOCKS), np.nan) for name in SIGNATURES}
        grp = self.store._group[path]  # noqa: SLF001
        return {name: np.asarray(grp[name][...]) for name in SIGNATURES}

    def assemble(self, arch: Arch, config: DistillConfig) -> BloxModel:
        """A student model of ``arch``: the teacher's stem and head with the library's block per stage."""
        if not isinstance(arch, Arch):
            raise InvalidArgumentError(f"arch must be an Arch, got {type(arch).__name__}")
        teacher = self.teacher_model()
        student = BloxModel(arch, teacher.config)
        student.stem.load_state_dict(teacher.stem.state_dict())
        student.classifier.load_state_dict(teacher.classifier.state_dict())
        student.stages = nn.ModuleList(self.load_stage(s, b, config) for s, b in enumerate(arch.blocks))
        return student
