"""The 13 zero-cost proxies, each from its paper's definition (conventions: :mod:`blox_env.proxies`).

Sources: params, flops (model size); l2_norm, grad_norm, plain, snip (Lee et al., ICLR 2019), grasp (Wang
et al., ICLR 2020), fisher (Theis et al. 2018; Turner et al., ICLR 2020), synflow (Tanaka et al., NeurIPS 2020),
the six as collected by Abdelfattah et al., ICLR 2021; jacov (Mellor et al. 2020, v1), nwot (Mellor et al.,
ICML 2021), epe_nas (Lopes et al., ICANN 2021), zen (Lin et al., ICCV 2021).

:func:`score` scores any ``nn.Module`` mapping the batch to logits (tests use tiny hand-checkable nets);
:func:`compute_proxies` builds a Blox model per initialisation seed and times each proxy.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from blox_env.errors import InvalidArgumentError
from blox_env.proxies.inputs import ProxyBatch

__all__ = ["CONVENTIONS", "DATA_FREE", "PROXIES", "ProxyResult", "check_proxies", "compute_proxies", "init_model",
           "score"]

PROXIES = ("epe_nas", "fisher", "flops", "grad_norm", "grasp", "jacov", "l2_norm", "nwot", "params", "plain",
           "snip", "synflow", "zen")
#: Proxies that do not read the batch's images or labels (only its shape).
DATA_FREE = ("flops", "l2_norm", "params", "synflow", "zen")
JACOV_K = 1e-5  # Mellor et al.'s eigenvalue offset (also EPE-NAS's)
ZEN_ALPHA = 0.01  # Zen-NAS's perturbation scale
CONVENTIONS = {
    "init": "blox_env.model.build_model (PyTorch default init) under torch.manual_seed(init_seed); zen re-inits "
            "conv/linear weights N(0,1), biases 0, BN gamma 1 beta 0 (seeded by init_seed)",
    "loss": "mean cross-entropy of the logits",
    "batchnorm": "train mode (batch statistics); synflow: eval mode with its initial statistics",
    "layers": "weights of every Conv2d and Linear (no biases, no BatchNorm)",
    "sign": "higher is better as returned: jacov negated penalty, grasp sum(-theta*Hg), plain sum(theta*g)",
    "synflow": "float64, every parameter |theta|, one all-ones image; non-finite -> NaN",
    "nwot": "binary codes of every nn.ReLU output; log|det K|",
    "zen": f"alpha={ZEN_ALPHA}, N(0,1) images of the batch shape, per-sample Frobenius norm of the pre-pool map",
    "jacov_k": JACOV_K,
    "flops": "conv + linear multiply-accumulates per image",
}


class ProxyResult(NamedTuple):
    """One proxy of one model and initialisation seed: its score and the seconds it took."""

    value: float
    seconds: float


def check_proxies(names: Iterable[str] | str | None) -> tuple[str, ...]:
    """The proxy names asked for (None: all 13), in :data:`PROXIES` order; unknown names raise."""
    if names is None:
        return PROXIES
    if isinstance(names, str):
        names = [n for n in names.replace(",", " ").split() if n]
    names = list(names)
    unknown = [n for n in names if n not in PROXIES]
    if unknown or not names:
        raise InvalidArgumentError(f"unknown proxy {', '.join(map(repr, unknown)) or '(none given)'}: "
                                   f"allowed {', '.join(PROXIES)}")
    return tuple(p for p in PROXIES if p in names)


# ------------------------------------------------------------------ helpers
def _layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def _loss_backward(model: nn.Module, batch: ProxyBatch) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(batch.x), batch.y).backward()


def _weight_sum(model: nn.Module, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> float:
    return float(sum(fn(m.weight.detach(), m.weight.grad).double().sum() for m in _layers(model)
                     if m.weight.grad is not None))


def _input_jacobian(model: nn.Module, batch: ProxyBatch) -> np.ndarray:
    """d(sum of the logits)/dx per image, flattened: [B, C*H*W] (float64)."""
    model.train()
    x = batch.x.clone().requires_grad_(True)
    model(x).sum().backward()
    return x.grad.reshape(len(x), -1).double().numpy()


def _corrcoef(rows: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.corrcoef(rows)


# ------------------------------------------------------------------ the proxies
def _params(model: nn.Module, batch: ProxyBatch, seed: int) -> float:
    return float(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _flops(model: nn.Module, batch: ProxyBatch, seed: int) -> float:
    total = [0]

    def hook(mod: nn.Module, inp: Any, out: torch.Tensor) -> None:
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            total[0] += out[0].numel() * (mod.in_channels // mod.groups) * kh * kw
        else:
            total[0] += mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in _layers(model)]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *batch.shape))
    finally:
        for h in handles:
            h.remove()
    return float(total[0])


def _l2_norm(model: nn.Module, batch: ProxyBatch, seed: int) -> float:
    return float(sum(m.weight.detach().double().norm() for m in _layers(model)))


def _grad_norm(model: nn.Module, batch: ProxyBatch, seed: int) -> float:
    _loss_backward(model, batch)
    return float(sum(m.weight.grad.double().norm() for m in _layers(model) if m.weight.grad is not None))


def _plain(model: nn.Module, batch: ProxyBatch, seed: int) -> float:
    _loss_backward(model, batch)
    return _weight_sum(model, lambda w, g: w * g)


def _snip(model: nn.Module, batch: ProxyBatch, seed: int) -> float:
    _loss_backward(model, batch)
    return _weight_sum(model, lambda w, g: (w * g).abs())


def _grasp(model: nn.Module, batch: ProxyBatch, seed: int) -> float:
    """sum(-theta * H g), H g = d(g . stop_grad(g))/dtheta (Wang et al., the Hessian-gradient product)."""
    model.train()
    weights = [m.weight for m in _layers(model)]
    loss = nn.functional.cross_entropy(model(batch.x), batch.y)
    grads = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
    pairs = [(w, g) for w, g in zip(weights, grads) if g is not None]
    z = sum((g * g.detach()).sum() for _, g in pairs)
    hg = torch.autograd.grad(z, [w for w, _ in pairs], allow_unused=True)
    return float(sum((-w.detach() * h).double().sum() for (w, _), h in zip(pairs, hg) if h is not None))


def _fisher(model: nn.Module, batch: ProxyBatch, seed: int) -> float:
    """Sum over the channels of every conv/linear output of 0.5 * mean_n (sum_hw a * dL/da)^2."""
    acts: list[torch.Tensor] = []

    def hook(mod: nn.Module, inp: Any, out: torch.Tensor) -> None:
        if out.requires_grad:
            out.retain_grad()
            acts.append(out)

    handles = [m.register_forward_hook(hook) for m in _layers(model)]
    try:
        _loss_backward(model, batch)
    finally:
        for h in handles:
            h.remove()
    total = 0.0
    for a in acts:
        if a.grad is None:
            continue
        prod = (a.detach() * a.grad).double()
        per_channel = prod.sum(dim=(2, 3)) if prod.ndim == 4 else prod
        total += float(0.5 * per_channel.pow(2).mean(0).sum())
    return total


def _jacov(model: nn.Module, batch: ProxyBatch, seed: int) -> float:
    """-sum_i [log(l_i + k) + 1 / (l_i + k)] over the eigenvalues l_i of the Jacobians' correlation matrix."""
    corr = _corrcoef(_input_jacobian(model, batch))
    if not np.all(np.isfinite(corr)):
        return math.nan
    lam = np.linalg.eigvalsh(corr)
    return float(-np.sum(np.log(lam + JACOV_K) + 1.0 / (lam + JACOV_K)))


def _epe_nas(model: nn.Module, batch: ProxyBatch, seed: int) -> float:
    """Per class c: E_c = sum_ij log(|corr(J_c)_ij| + k); score = sum_c sum_c' |E_c - E_c'| / C (classes with
    at least 2 images in the batch; an undefined correlation counts as 0)."""
    jac = _input_jacobian(model, batch)
    labels = batch.y.numpy()
    per_class = []
    for c in np.unique(labels).tolist():
        rows = jac[labels == c]
        if len(rows) < 2:
            continue
        corr = np.nan_to_num(_corrcoef(rows), nan=0.0)
        per_class.append(float(np.sum(np.log(np.abs(corr) + JACOV_K))))
    if not per_class:
        return math.nan
    e = np.asarray(per_class)
    return float(np.abs(e[:, None] - e[None, :]).sum() / len(e))


def _nwot(model: nn.Module, batch: ProxyBatch, seed: int) -> float:
    """log|det K|, K_ij = number of ReLUs on which images i and j agree (both active or both inactive)."""
    n = len(batch.x)
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(mod: nn.Module, inp: Any, out: torch.Tensor) -> None:
        code = (out.detach().reshape(n, -1) > 0).double()
        kernel.add_(code @ code.T + (1 - code) @ (1 - code).T)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        model.train()
        with torch.no_grad():
            model(batch.x)
    finally:
        for h in handles:
            h.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if float(sign) != 0 else -math.inf


def _synflow(model: nn.Module, batch: ProxyBatch, seed: int) -> float:
    """sum over weights of theta * dR/dtheta, R = sum of the outputs of the |theta| network on one all-ones image."""
    model.double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model.zero_grad(set_to_none=True)
    model(torch.ones(1, *batch.shape, dtype=torch.float64)).sum().backward()
    value = _weight_sum(model, lambda w, g: w * g)
    return value if math.isfinite(value) else math.nan


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The map before global pooling for a Blox model (its last stage's output), else the module's output."""
    from blox_env.model import BloxModel

    if isinstance(model, BloxModel):
        return model(x, return_features=True)[1][-1][1]
    return model(x)


def _zen(model: nn.Module, batch: ProxyBatch, seed: int) -> float:
    """log E ||f(x) - f(x + a e)||_F + sum over BN layers of log sqrt(mean_c sigma_c^2) (Zen-NAS)."""
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) and m.affine:
                m.weight.fill_(1.0)
                m.bias.zero_()
    x = torch.randn(batch.x.shape, generator=gen)
    eps = torch.randn(batch.x.shape, generator=gen)
    variances: list[torch.Tensor] = []

    def hook(mod: nn.Module, inp: Any, out: torch.Tensor) -> None:
        a = inp[0]
        dims = [d for d in range(a.ndim) if d != 1]
        variances.append(a.double().var(dim=dims, unbiased=False).mean())

    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d)]
    model.train()
    with torch.no_grad():
        handles = [m.register_forward_hook(hook) for m in bns]
        try:
            f1 = _features(model, x)
        finally:
            for h in handles:
                h.remove()
        f2 = _features(model, x + ZEN_ALPHA * eps)
    delta = (f1 - f2).double().reshape(len(x), -1).norm(dim=1).mean()
    return float(torch.log(delta) + sum(0.5 * torch.log(v) for v in variances))


_REWRITES = ("synflow", "zen")  # proxies that change the weights or their dtype
_MEASURES: dict[str, Callable[[nn.Module, ProxyBatch, int], float]] = {
    "epe_nas": _epe_nas, "fisher": _fisher, "flops": _flops, "grad_norm": _grad_norm, "grasp": _grasp,
    "jacov": _jacov, "l2_norm": _l2_norm, "nwot": _nwot, "params": _params, "plain": _plain, "snip": _snip,
    "synflow": _synflow, "zen": _zen,
}


# ------------------------------------------------------------------ public API
def score(name: str, model: nn.Module, batch: ProxyBatch, *, seed: int = 0) -> float:
    """Proxy ``name`` of ``model`` (any module mapping ``batch.x`` to logits) on ``batch``, on a copy of the
    model (its weights are left as they were). ``seed`` drives the random draws of ``zen``."""
    (name,) = check_proxies([name]) if isinstance(name, str) else (None,)
    if name is None:
        raise InvalidArgumentError(f"proxy name must be a str, one of {', '.join(PROXIES)}")
    if not isinstance(model, nn.Module):
        raise InvalidArgumentError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(batch, ProxyBatch):
        raise InvalidArgumentError(f"batch must be a ProxyBatch (see proxy_batch), got {type(batch).__name__}")
    return float(_MEASURES[name](copy.deepcopy(model), batch, int(seed)))


def init_model(arch: Any, *, init_seed: int = 0, config: Any = None) -> nn.Module:
    """The Blox model of ``arch`` initialised under ``init_seed`` (the global RNG is left as it was)."""
    from blox_env.model import build_model
    from blox_env.shapes import ModelConfig
    from blox_env.space import parse_arch

    if isinstance(init_seed, bool) or not isinstance(init_seed, int | np.integer) or int(init_seed) < 0:
        raise InvalidArgumentError(f"init_seed must be an integer >= 0, got {init_seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(init_seed))
        return build_model(parse_arch(arch), config if config is not None else ModelConfig())


def compute_proxies(arch: Any, batch: ProxyBatch, *, init_seed: int = 0, proxies: Iterable[str] | None = None,
                    config: Any = None) -> dict[str, ProxyResult]:
    """Every proxy asked for (default: all 13) of ``arch`` at ``init_seed``, with the seconds each took
    (restoring the initial weights and its own passes; building the model is not counted: it is paid once
    for all proxies)."""
    names = check_proxies(proxies)
    if not isinstance(batch, ProxyBatch):
        raise InvalidArgumentError(f"batch must be a ProxyBatch (see proxy_batch), got {type(batch).__name__}")
    model = init_model(arch, init_seed=init_seed, config=config)
    c, h, w = batch.shape
    cfg = model.config
    if (c, h, w) != (cfg.in_channels, cfg.image_size, cfg.image_size) or batch.num_classes != cfg.num_classes:
        raise InvalidArgumentError(
            f"batch of {c}x{h}x{w} images and {batch.num_classes} classes does not fit the model config "
            f"({cfg.in_channels}x{cfg.image_size}x{cfg.image_size}, {cfg.num_classes} classes)")
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    out = {}
    # proxies that only read the weights share the model (gradients cleared, BN statistics restored first);
    # synflow and zen rewrite the weights, so they run last, each from the initial state
    for name in sorted(names, key=lambda n: n in _REWRITES):
        start = time.perf_counter()
        model.load_state_dict(initial)
        model.zero_grad(set_to_none=True)
        value = _MEASURES[name](model, batch, int(init_seed))
        model.float()
        out[name] = ProxyResult(float(value), time.perf_counter() - start)
    return {name: out[name] for name in names}
