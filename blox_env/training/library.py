"""The block library: distilled blocks, their signatures and the teacher, inside a BloxStore.

The store owns the layout (``blockwise/<teacher hash>/``: teacher weights, ``library/`` blocks,
``signatures/``, ``finetune/`` runs; see :mod:`blox_env.datasets.store.blockwise_tree`); this module
turns PyTorch modules into the store's flat weights and back. Weights are stored as one flat float32
array per module with the tensor names, shapes and dtypes beside it, never as pickles: loading
cannot execute code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from blox_env.datasets.store.blockwise_tree import SIGNATURE_NAMES, FlatWeights
from blox_env.errors import ArchitectureNotFoundError, InvalidArgumentError
from blox_env.model import BloxModel, Stage
from blox_env.shapes import ModelConfig
from blox_env.space import Arch
from blox_env.training.distill import DistillConfig, DistillResult

if TYPE_CHECKING:
    from blox_env.datasets.store.core import BloxStore

__all__ = ["BlockLibrary", "flatten_state", "unflatten_state"]


def flatten_state(state: dict[str, torch.Tensor]) -> FlatWeights:
    """A state dict as the store keeps it: one flat vector with each tensor's name, shape and dtype."""
    names = list(state)
    flat = np.concatenate([state[k].detach().cpu().double().reshape(-1).numpy() for k in names]) if names else \
        np.zeros(0)
    return FlatWeights(flat.astype(np.float32), names, [list(state[k].shape) for k in names],
                       [str(state[k].dtype).replace("torch.", "") for k in names])


def unflatten_state(weights: FlatWeights) -> dict[str, torch.Tensor]:
    """Inverse of :func:`flatten_state` (the store has checked that the sizes agree)."""
    flat = torch.from_numpy(np.asarray(weights.values, dtype=np.float32))
    out, pos = {}, 0
    for name, shape, dtype in zip(weights.names, weights.shapes, weights.dtypes):
        n = int(np.prod(shape)) if shape else 1
        out[name] = flat[pos : pos + n].reshape(shape).to(getattr(torch, dtype)).clone()
        pos += n
    return out


class BlockLibrary:
    """Distilled blocks of one teacher in a store (opened for writing to add blocks)."""

    def __init__(self, store: BloxStore, teacher: Arch) -> None:
        self.store = store
        self.teacher = teacher
        self.key = store.teacher_path(teacher)

    # ------------------------------------------------------------------ teacher
    @property
    def exists(self) -> bool:
        return self.store.has_teacher(self.teacher)

    def save_teacher(self, model: BloxModel, *, attrs: dict[str, Any]) -> None:
        """Store the trained teacher's weights and provenance (recipe, data, seed, accuracy)."""
        self.store.write_teacher(self.teacher, flatten_state(model.state_dict()),
                                 attrs={"teacher_blocks": list(self.teacher.blocks),
                                        "model_config": vars(model.config), **attrs})

    @property
    def attrs(self) -> dict[str, Any]:
        if not self.exists:
            raise ArchitectureNotFoundError(f"no teacher {self.teacher.index} ({self.teacher.hash}) in this store")
        return self.store.teacher_attrs(self.teacher)

    def teacher_model(self) -> BloxModel:
        """The teacher with its stored weights (eval mode)."""
        cfg = ModelConfig(**self.attrs["model_config"])
        model = BloxModel(self.teacher, cfg)
        model.load_state_dict(unflatten_state(self.store.read_teacher(self.teacher)))
        return model.eval()

    # ------------------------------------------------------------------ blocks
    def has(self, stage: int, block: int, config: DistillConfig) -> bool:
        return self.store.has_block(self.teacher, config.key, stage, block)

    def missing(self, candidates: list[tuple[int, int]], config: DistillConfig) -> list[tuple[int, int]]:
        return [c for c in candidates if not self.has(*c, config)]

    def save(self, result: DistillResult, config: DistillConfig) -> None:
        """Store a distilled block (its kept weights; attrs: the signatures, time, validation curve and best
        epoch), then its signatures (overwrites the same key)."""
        self.store.write_block(self.teacher, config.key, result.stage, result.block, flatten_state(result.state_dict),
                               config=config.to_dict(),
                               attrs={"distill_loss": result.distill_loss, "lana_delta": result.lana_delta,
                                      "train_time_s": result.train_time_s, "val_losses": result.val_losses,
                                      "best_epoch": result.best_epoch})
        values = (result.distill_loss, result.lana_delta, result.train_time_s)
        self.store.write_signature(self.store.signatures_path(self.teacher, config.key), result.stage, result.block,
                                   dict(zip(SIGNATURE_NAMES, values)))

    def load_stage(self, stage: int, block: int, config: DistillConfig) -> Stage:
        """The distilled block (with its reduction) as a module with the stored weights."""
        if not self.has(stage, block, config):
            raise ArchitectureNotFoundError(
                f"block {block} of stage {stage} is not distilled for config {config.key} of this teacher"
            )
        cfg = ModelConfig(**self.attrs["model_config"])
        module = Stage(block, cfg.channels(stage))
        module.load_state_dict(unflatten_state(self.store.read_block(self.teacher, config.key, stage, block)))
        return module

    def signatures(self, config: DistillConfig) -> dict[str, np.ndarray]:
        """``{distill_loss, lana_delta, distill_time_s}`` as ``[3, 45]`` arrays (NaN where not distilled)."""
        return self.store.read_signatures(self.store.signatures_path(self.teacher, config.key))

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
