"""Fast kernels (blox_env.kernels and the fast training loop) equal the plain path within float tolerance.

Tolerances: float64 — one conv's output and gradients, and a whole model's logits, gradients and running
statistics within 1e-10 (relative to the largest magnitude); a whole model's weights after 5 SGD steps
(momentum, weight decay) within 1e-9. Float32 — one conv within 1e-4 relative; 2 SGD steps of a digits
training: weights within 1e-4 relative, the same accuracies, losses within 1e-4. Longer float32 trainings
drift apart as any two summation orders do (PyTorch's own oneDNN and native convs too): compare them by
their statistics (benchmarks/engine.py reports mean accuracy under both engines). The parts of the fast
loop that are not kernels (FlatSGD, in-place copies of the best weights) are bitwise equal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

import blox_env.kernels as kernels
import blox_env.model as model_mod
from blox_env.costs import params_table
from blox_env.datasets.images import load_digits, synthetic_images
from blox_env.errors import InvalidArgumentError
from blox_env.kernels import FastConv2d, conv_strategy, fast_kernels, fast_kernels_enabled, tap_matrix
from blox_env.shapes import ModelConfig
from blox_env.space import Arch
from blox_env.training.flat_sgd import FlatSGD
from blox_env.training.recipes import DIGITS_MINI, Recipe
from blox_env.training.train import _copy_state, train_model

TINY_CFG = ModelConfig(stem_channels=4, in_channels=1, image_size=8, num_classes=10)
ARCHS = (Arch.from_blocks(11, 23, 1), Arch.from_blocks(9, 24, 11))  # every op, bottlenecks at every stage

# (cin, cout, kernel, stride, padding, groups, size, bias) -> the strategy the rule table must pick
CASES = [
    ((4, 4, 3, 1, 1, 1, 8, True), "unrolled"),
    ((4, 8, 3, 2, 1, 1, 8, True), "unrolled"),
    ((4, 8, 2, 2, 0, 1, 8, True), "unrolled"),
    ((1, 4, 3, 1, 1, 1, 8, False), "unrolled"),
    ((16, 16, 3, 1, 1, 1, 1, True), "unrolled"),
    ((4, 8, 3, 1, 1, 1, 7, True), "native"),  # dense matrix over the size limit
    ((2, 2, 5, 1, 2, 2, 8, True), "unrolled_depthwise"),
    ((8, 8, 5, 1, 2, 8, 4, True), "unrolled_depthwise"),
    ((32, 32, 5, 1, 2, 32, 2, False), "unrolled_depthwise"),
    ((8, 8, 5, 1, 2, 8, 16, True), "native"),  # depthwise map over 8x8
    ((4, 8, 1, 1, 0, 1, 8, True), "pointwise"),
    ((16, 32, 1, 1, 0, 1, 2, True), "pointwise"),
    ((8, 8, 1, 1, 0, 1, 1, False), "pointwise"),
    # grouped, not depthwise (models stacked side by side): the same rules per group
    ((12, 12, 3, 1, 1, 3, 8, True), "unrolled"),
    ((12, 24, 3, 2, 1, 3, 8, False), "unrolled"),
    ((12, 24, 2, 2, 0, 3, 8, True), "unrolled"),
    ((12, 24, 3, 1, 1, 3, 8, True), "native"),  # each group's matrix over the size limit
    ((12, 6, 1, 1, 0, 3, 8, True), "pointwise"),
    ((24, 48, 1, 1, 0, 3, 2, False), "pointwise"),
]


def _grads(conv: nn.Conv2d, x: torch.Tensor) -> list[torch.Tensor]:
    y = conv(x)
    params = [x, conv.weight] + ([conv.bias] if conv.bias is not None else [])
    return [y.detach(), *torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).view_as(y).to(y)).sum(), params)]


def _close(a: torch.Tensor, b: torch.Tensor, rel: float) -> bool:
    return bool((a - b).abs().max() <= rel * max(1.0, float(b.abs().max())))


@pytest.mark.parametrize("dtype,rel", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("case,kind", CASES)
def test_each_conv_path_equals_conv2d(case: tuple, kind: str, dtype: torch.dtype, rel: float) -> None:
    cin, cout, k, s, p, g, size, bias = case
    torch.manual_seed(0)
    conv = FastConv2d(cin, cout, k, stride=s, padding=p, groups=g, bias=bias).to(dtype)
    x = torch.randn(6, cin, size, size, dtype=dtype, requires_grad=True)
    assert conv_strategy(conv, x.shape, device=x.device, dtype=dtype) == kind
    fast = _grads(conv, x)
    with fast_kernels(False):
        assert conv_strategy(conv, x.shape) == "native"
        plain = _grads(conv, x)
    for f, q in zip(fast, plain, strict=True):
        assert f.shape == q.shape and _close(f, q, rel)


@pytest.mark.parametrize("op", [0, 1, 2])
def test_stacked_op_computes_each_copy_as_the_single_op(op: int) -> None:
    """``stack=S``: copy s owns channels s*C..(s+1)*C-1 and equals the single op with its own weights (float64)."""
    torch.manual_seed(0)
    singles = [model_mod.make_op(op, 4).double() for _ in range(3)]
    stacked = model_mod.make_op(op, 4, stack=3).double()
    states = [m.state_dict() for m in singles]
    stacked.load_state_dict({k: v if k.endswith("num_batches_tracked") else torch.cat([st[k] for st in states])
                             for k, v in states[0].items()})
    xs = [torch.randn(5, 4, 8, 8, dtype=torch.float64, requires_grad=True) for _ in singles]
    outs = [m(x) for m, x in zip(singles, xs, strict=True)]
    xcat = torch.cat(xs, dim=1)
    out = stacked(xcat)
    assert _close(out, torch.cat(outs, dim=1), 1e-10)
    weights = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out)
    grads = torch.autograd.grad((out * weights).sum(), [xcat, *stacked.parameters()])
    single_grads = [torch.autograd.grad((o * w).sum(), [x, *m.parameters()])
                    for o, w, x, m in zip(outs, weights.chunk(3, dim=1), xs, singles, strict=True)]
    for i, g in enumerate(grads):  # the input's gradient side by side in channels, the parameters' stacked on axis 0
        assert _close(g, torch.cat([sg[i] for sg in single_grads], dim=1 if i == 0 else 0), 1e-10)


@pytest.mark.parametrize("stack", [0, -1, 1.5, True])
def test_make_op_rejects_a_bad_stack(stack: object) -> None:
    with pytest.raises(InvalidArgumentError, match="stack must be a positive integer"):
        model_mod.make_op(0, 4, stack=stack)


def test_depthwise_gradient_reaches_only_the_depthwise_weight() -> None:
    conv = FastConv2d(8, 8, 5, padding=2, groups=8)
    assert conv.weight.shape == (8, 1, 5, 5) and set(conv.state_dict()) == {"weight", "bias"}
    conv(torch.randn(3, 8, 4, 4)).sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.shape == (8, 1, 5, 5)
    assert [n for n, _ in conv.named_parameters()] == ["weight", "bias"]


def _model_pair(arch: Arch, dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(3)
    return model_mod.build_model(arch, TINY_CFG).to(dtype)


@pytest.mark.parametrize("arch", ARCHS, ids=str)
def test_whole_model_forward_and_gradients_match(arch: Arch) -> None:
    model = _model_pair(arch, torch.float64)
    x = torch.randn(16, 1, 8, 8, dtype=torch.float64)

    def run() -> list[torch.Tensor]:
        state = {k: v.clone() for k, v in model.state_dict().items()}
        model.train()
        out = model(x)
        grads = torch.autograd.grad(out.square().sum(), list(model.parameters()))
        running = [v.clone() for k, v in model.state_dict().items() if "running" in k]
        model.eval()
        with torch.no_grad():
            evals = model(x)
        model.load_state_dict(state)  # undo the running-statistics update
        return [out.detach(), *grads, *running, evals]

    fast = run()
    with fast_kernels(False):
        plain = run()
    assert len(fast) == len(plain)
    for f, q in zip(fast, plain, strict=True):
        assert _close(f, q, 1e-10)


@pytest.mark.parametrize("arch", ARCHS, ids=str)
def test_five_sgd_steps_give_the_same_weights(arch: Arch) -> None:
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(16, 1, 8, 8, generator=gen, dtype=torch.float64), torch.randint(0, 10, (16,),
                                                                                          generator=gen))
               for _ in range(5)]

    def train() -> dict[str, torch.Tensor]:
        model = _model_pair(arch, torch.float64)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4,
                              foreach=fast_kernels_enabled())
        for x, y in batches:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return model.state_dict()

    fast = train()
    with fast_kernels(False):
        plain = train()
    assert fast.keys() == plain.keys()
    for k in fast:
        assert _close(fast[k].double(), plain[k].double(), 1e-9), k


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    return synthetic_images(n_train=96, n_val=48, n_test=48, num_classes=10, image_size=8, channels=1, seed=0)


ONE_EPOCH = Recipe(name="tiny1", epochs=1, batch_size=32, eval_batch_size=64, lr=0.05, stem_channels=4,
                   crop_padding=1)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest difference of two state dicts, each tensor's relative to its largest magnitude (at least 1)."""
    return max(float((a[k].double() - b[k].double()).abs().max()) / max(1.0, float(b[k].double().abs().max()))
               for k in b)


def test_short_float32_training_gives_the_same_weights_and_metrics() -> None:
    """Two SGD steps of a real training (digits, crop augmentation, BatchNorm) agree within 1e-4 relative, far
    closer than PyTorch's own native conv comes to its oneDNN conv (Blox-mini training amplifies rounding: from
    the third step on, the two PyTorch backends differ by ~10% in some weights, and so do the fast kernels)."""
    torch.set_num_threads(1)
    digits = load_digits(seed=0, train_limit=256)
    recipe = DIGITS_MINI.with_(epochs=1, lr=0.01)
    arch = ARCHS[0]
    fast = train_model(arch, digits, recipe=recipe, seed=0, device="cpu", keep_weights=True)
    with fast_kernels(False):
        plain = train_model(arch, digits, recipe=recipe, seed=0, device="cpu", keep_weights=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a TF32 notice of the flags context
            with torch.backends.mkldnn.flags(enabled=False):
                native = train_model(arch, digits, recipe=recipe, seed=0, device="cpu", keep_weights=True)
    d_fast, d_native = _max_diff(fast.state_dict, plain.state_dict), _max_diff(native.state_dict, plain.state_dict)
    assert 0 < d_fast <= 1e-4 and d_fast < d_native
    assert fast.test_top1 == plain.test_top1 and fast.test_top5 == plain.test_top5
    assert abs(fast.test_loss - plain.test_loss) <= 1e-4 and fast.curves["val_top1"] == plain.curves["val_top1"]


def test_fast_loop_without_kernels_is_bitwise_the_old_loop(data, monkeypatch: pytest.MonkeyPatch) -> None:
    """FlatSGD and the in-place best-weight copies change no bit: only the conv kernels round differently."""
    monkeypatch.setattr(kernels, "conv_strategy", lambda *a, **k: "native")
    recipe = ONE_EPOCH.with_(epochs=3)
    fast = train_model(ARCHS[1], data, recipe=recipe, seed=2, device="cpu", keep_weights=True)
    with fast_kernels(False):
        plain = train_model(ARCHS[1], data, recipe=recipe, seed=2, device="cpu", keep_weights=True)
    assert fast.curves == plain.curves and fast.best_epoch == plain.best_epoch and fast.test_top1 == plain.test_top1
    assert all(torch.equal(fast.state_dict[k], v) for k, v in plain.state_dict.items())


def test_best_weight_copy_is_in_place_and_exact() -> None:
    model = _model_pair(ARCHS[0], torch.float32)
    first = _copy_state(model, None, in_place=True)
    ids = [id(v) for v in first.values()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    second = _copy_state(model, first, in_place=True)
    assert second is first and [id(v) for v in second.values()] == ids
    assert all(torch.equal(second[k], v) for k, v in model.state_dict().items())
    assert _copy_state(model, first, in_place=False) is not first


@pytest.mark.parametrize("arch", ARCHS, ids=str)
def test_state_dict_and_parameter_count_unchanged(arch: Arch, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = model_mod.build_model(arch, TINY_CFG)
    monkeypatch.setattr(model_mod, "FastConv2d", nn.Conv2d)
    plain = model_mod.build_model(arch, TINY_CFG)
    assert {k: v.shape for k, v in fast.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    n = sum(p.numel() for p in fast.parameters())
    assert n == sum(p.numel() for p in plain.parameters()) == int(params_table(TINY_CFG)[arch.index])
    plain.load_state_dict(fast.state_dict())  # stored weights load either way


def test_rule_table_falls_back_to_native() -> None:
    conv = FastConv2d(4, 4, 3, padding=1)
    assert conv_strategy(conv, (2, 4, 8, 8), device=torch.device("meta")) == "native"
    assert conv_strategy(conv, (2, 4, 8, 8), dtype=torch.float16) == "native"
    assert conv_strategy(conv, (2, 3, 8, 8)) == "native"  # wrong channel count: the plain conv raises
    with pytest.raises(RuntimeError):
        conv(torch.randn(2, 3, 8, 8))
    assert conv_strategy(FastConv2d(4, 4, 3, padding=1, dilation=2), (2, 4, 8, 8)) == "native"


def test_tap_matrix_places_every_tap_once_and_rejects_bad_geometry() -> None:
    s = tap_matrix((4, 4), kernel=(3, 3), stride=(1, 1), padding=(1, 1))
    assert s.shape == (9, 16, 16) and float(s.sum()) == 4 * 4 + 8 * 6 + 4 * 9  # in-bounds taps: corners, edges, inside
    assert torch.all(s.sum(dim=1) <= 1) and float(s[4].trace()) == 16  # centre tap: identity
    with pytest.raises(InvalidArgumentError, match="pairs of positive ints"):
        tap_matrix((0, 4), kernel=(3, 3), stride=(1, 1), padding=(1, 1))
    with pytest.raises(InvalidArgumentError, match="does not fit"):
        tap_matrix((2, 2), kernel=(5, 5), stride=(1, 1), padding=(0, 0))


def test_switch_by_context_and_environment() -> None:
    with pytest.raises(InvalidArgumentError, match="True or False"), fast_kernels(1):  # type: ignore[arg-type]
        pass
    before = fast_kernels_enabled()
    with fast_kernels(not before):
        assert fast_kernels_enabled() is (not before)
    assert fast_kernels_enabled() is before
    env = {**os.environ, "BLOX_FAST_KERNELS": "0"}
    out = subprocess.run([sys.executable, "-c", "import blox_env.kernels as k; print(k.fast_kernels_enabled())"],
                         capture_output=True, text=True, env=env, check=True).stdout.strip()
    assert out == "False"


@pytest.mark.parametrize("momentum,nesterov,wd", [(0.9, False, 5e-4), (0.9, True, 5e-4), (0.9, True, 0.0),
                                                  (0.0, False, 1e-3), (0.5, False, 0.0)])
def test_flat_sgd_is_bitwise_torch_sgd(momentum: float, nesterov: bool, wd: float) -> None:
    a, b = _model_pair(ARCHS[0], torch.float32), _model_pair(ARCHS[0], torch.float32)
    flat = FlatSGD(a.parameters(), lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    ref = torch.optim.SGD(b.parameters(), lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(flat, T_max=4)
    gen = torch.Generator().manual_seed(0)
    for step in range(4):
        x = torch.randn(8, 1, 8, 8, generator=gen)
        for model, opt in ((a, flat), (b, ref)):
            opt.zero_grad(set_to_none=True)
            model(x).square().mean().backward()
            opt.step()
        sched.step()
        ref.param_groups[0]["lr"] = flat.param_groups[0]["lr"]
        assert step == 3 or flat.param_groups[0]["lr"] < 0.1
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_flat_sgd_rejects_what_it_cannot_run() -> None:
    model = _model_pair(ARCHS[0], torch.float32)
    with pytest.raises(InvalidArgumentError, match="lr > 0"):
        FlatSGD(model.parameters(), lr=0.0)
    with pytest.raises(InvalidArgumentError, match="nesterov"):
        FlatSGD(model.parameters(), lr=0.1, nesterov=True)
    with pytest.raises(InvalidArgumentError, match="at least one parameter"):
        FlatSGD([nn.Parameter(torch.ones(2), requires_grad=False)], lr=0.1)
    with pytest.raises(InvalidArgumentError, match="one device and dtype"):
        FlatSGD([nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2, dtype=torch.float64))], lr=0.1)
    with pytest.raises(InvalidArgumentError, match="closure"):
        FlatSGD(model.parameters(), lr=0.1).step(lambda: 0.0)
