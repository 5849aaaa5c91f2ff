"""SGD over one flat buffer: ``torch.optim.SGD``'s update as a handful of ops instead of a loop over tensors.

Why: a Blox-mini model has 90-260 parameter tensors of a few dozen numbers each; ``torch.optim.SGD``
walks them in Python every step (and ``zero_grad`` again), 5-7% of a training. :class:`FlatSGD`
re-points every parameter to a view of one contiguous tensor and every gradient to a view of another,
so a step is 3-5 whole-buffer ops and ``zero_grad`` one ``zero_`` (autograd accumulates into the
existing gradient views in place). The element-wise arithmetic is SGD's own (weight decay, momentum with
dampening 0, Nesterov; the same operations in the same order), so the weights agree with
``torch.optim.SGD`` to the last bit in practice (``tests/space/test_fast_kernels.py``). Parameters keep their
shapes and names; ``state_dict`` is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from blox_env.errors import InvalidArgumentError

__all__ = ["FlatSGD"]


class FlatSGD(torch.optim.Optimizer):
    """SGD (lr, momentum, weight decay, Nesterov; one parameter group, dense CPU/GPU tensors of one dtype)."""

    def __init__(self, params: Iterable[nn.Parameter], *, lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        if not lr > 0 or momentum < 0 or weight_decay < 0 or (nesterov and momentum <= 0):
            raise InvalidArgumentError(f"FlatSGD needs lr > 0, momentum >= 0, weight_decay >= 0 and momentum > 0 "
                                       f"with nesterov; got lr={lr}, momentum={momentum}, "
                                       f"weight_decay={weight_decay}, nesterov={nesterov}")
        params = [p for p in params if p.requires_grad]
        if not params:
            raise InvalidArgumentError("FlatSGD needs at least one parameter that requires grad")
        if len({(p.device, p.dtype) for p in params}) != 1 or any(p.is_sparse for p in params):
            raise InvalidArgumentError("FlatSGD needs dense parameters of one device and dtype")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                                  "nesterov": nesterov})
        total = sum(p.numel() for p in params)
        self._flat = torch.empty(total, dtype=params[0].dtype, device=params[0].device)
        self._flat_grad = torch.zeros_like(self._flat)
        offset = 0
        with torch.no_grad():
            for p in params:
                n = p.numel()
                self._flat[offset:offset + n].copy_(p.reshape(-1))
                p.data = self._flat[offset:offset + n].view_as(p)
                p.grad = self._flat_grad[offset:offset + n].view_as(p)
                offset += n
        self._buf: torch.Tensor | None = None

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero the gradient buffer in place (the gradient views must stay: ``set_to_none`` is ignored)."""
        self._flat_grad.zero_()

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        """One SGD step over the whole buffer (the group's current ``lr``, as a scheduler sets it)."""
        if closure is not None:
            raise InvalidArgumentError("FlatSGD.step takes no closure")
        group = self.param_groups[0]
        lr, momentum, wd, nesterov = group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]
        grad = self._flat_grad
        if wd != 0:
            grad = torch.add(grad, self._flat, alpha=wd)
        if momentum != 0:
            if self._buf is None:
                self._buf = grad.detach().clone()
            else:
                self._buf.mul_(momentum).add_(grad, alpha=1.0)
            grad = grad.add_(self._buf, alpha=momentum) if nesterov else self._buf
        self._flat.add_(grad, alpha=-lr)
