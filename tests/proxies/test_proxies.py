"""The 13 zero-cost proxies against independent computations on tiny networks (blox_env.proxies)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from blox_env.errors import InvalidArgumentError  # noqa: E402
from blox_env.proxies import (  # noqa: E402
    DATA_FREE,
    PROXIES,
    ProxyBatch,
    check_proxies,
    compute_proxies,
    init_model,
    proxy_batch,
    score,
)
from blox_env.proxies.measures import JACOV_K, ZEN_ALPHA  # noqa: E402
from blox_env.shapes import ModelConfig  # noqa: E402
from blox_env.space import Arch  # noqa: E402

torch.set_num_threads(1)
MINI = ModelConfig(stem_channels=4, in_channels=1, image_size=8, num_classes=10)


def _batch(n: int = 6, d: int = 3, classes: int = 2, seed: int = 0) -> ProxyBatch:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 1, d, generator=gen)
    y = torch.arange(n) % classes
    return ProxyBatch(x, y, classes)


def _mlp(seed: int = 0, d: int = 3, h: int = 4, out: int = 2, bias: bool = True) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, h, bias=bias), nn.ReLU(), nn.Linear(h, out, bias=bias))


def _weights(net: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in net.modules() if isinstance(m, nn.Linear)]


def _grads(net: nn.Module, batch: ProxyBatch) -> list[torch.Tensor]:
    loss = nn.functional.cross_entropy(net(batch.x), batch.y)
    return list(torch.autograd.grad(loss, _weights(net)))


def test_names_and_errors() -> None:
    assert len(PROXIES) == 13 and set(DATA_FREE) < set(PROXIES)
    assert check_proxies("snip, synflow") == ("snip", "synflow")
    with pytest.raises(InvalidArgumentError, match="unknown proxy 'snp'.*allowed epe_nas"):
        check_proxies(["snp"])
    with pytest.raises(InvalidArgumentError, match="unknown proxy"):
        score("bogus", _mlp(), _batch())
    with pytest.raises(InvalidArgumentError, match="ProxyBatch is empty"):
        ProxyBatch(torch.zeros(0, 1, 1, 3), torch.zeros(0, dtype=torch.int64), 2)
    with pytest.raises(InvalidArgumentError, match="at least 2 images"):
        ProxyBatch(torch.zeros(1, 1, 1, 3), torch.zeros(1, dtype=torch.int64), 2)
    with pytest.raises(InvalidArgumentError, match="float tensor"):
        ProxyBatch(torch.zeros(4, 3), torch.zeros(4, dtype=torch.int64), 2)
    with pytest.raises(InvalidArgumentError, match="labels outside"):
        ProxyBatch(torch.zeros(2, 1, 1, 3), torch.tensor([0, 5]), 2)
    with pytest.raises(InvalidArgumentError, match="batch_size must be an integer >= 2"):
        proxy_batch("gaussian", batch_size=1, shape=(1, 8, 8), num_classes=10)
    with pytest.raises(InvalidArgumentError, match="needs shape"):
        proxy_batch("gaussian", batch_size=4)
    with pytest.raises(InvalidArgumentError, match="unknown data spec"):
        proxy_batch("mnist", batch_size=4)
    with pytest.raises(InvalidArgumentError, match="must be a ProxyBatch"):
        score("snip", _mlp(), torch.zeros(2, 3))
    wrong = proxy_batch("gaussian", batch_size=4, shape=(3, 8, 8), num_classes=10)
    with pytest.raises(InvalidArgumentError, match="does not fit the model config"):
        compute_proxies(Arch.from_index(0), wrong, config=MINI, proxies=["params"])
    with pytest.raises(InvalidArgumentError, match="init_seed"):
        init_model(Arch.from_index(0), init_seed=-1, config=MINI)


def test_digits_batch_is_fixed_and_normalised() -> None:
    a, b = proxy_batch("digits", batch_size=64, seed=0), proxy_batch("digits", batch_size=64, seed=0)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.shape == (1, 8, 8) and a.num_classes == 10
    assert not torch.equal(a.x, proxy_batch("digits", batch_size=64, seed=1).x)
    with pytest.raises(InvalidArgumentError, match="exceeds the"):
        proxy_batch("digits", batch_size=5000)


def test_synflow_of_a_linear_network_is_depth_times_the_path_sum() -> None:
    # R = 1^T |W2| |W1| 1 is of degree one in each layer, so sum(theta * dR/dtheta) = R per layer
    net = _mlp(seed=3, bias=False)
    w1, w2 = (w.detach().double().abs() for w in _weights(net))
    expected = 2 * float((w2 @ w1 @ torch.ones(3, dtype=torch.float64)).sum())
    assert score("synflow", net, _batch()) == pytest.approx(expected, rel=1e-12)
    assert _weights(net)[0].dtype == torch.float32 and (_weights(net)[0] < 0).any()  # the caller's net untouched


def test_jacov_of_a_linear_map() -> None:
    # every image has the Jacobian W^T 1: the correlation matrix is all ones, eigenvalues (B, 0, ..., 0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3, 2))
    b = _batch(n=5)
    lam = np.array([5.0, 0, 0, 0, 0])
    expected = -np.sum(np.log(lam + JACOV_K) + 1 / (lam + JACOV_K))
    assert score("jacov", net, b) == pytest.approx(expected, rel=1e-6)


def test_jacov_and_epe_nas_of_an_mlp_against_per_image_jacobians() -> None:
    net, b = _mlp(seed=1, d=5, h=16), _batch(n=8, d=5, classes=2, seed=4)
    rows = []
    for i in range(len(b.x)):  # no BatchNorm: each image's Jacobian on its own
        xi = b.x[i:i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(xi).sum(), xi)
        rows.append(g.flatten().double().numpy())
    jac = np.stack(rows)
    lam = np.linalg.eigvalsh(np.corrcoef(jac))
    assert score("jacov", net, b) == pytest.approx(-np.sum(np.log(lam + JACOV_K) + 1 / (lam + JACOV_K)), rel=1e-6)
    labels = b.y.numpy()
    e = [np.sum(np.log(np.abs(np.corrcoef(jac[labels == c])) + JACOV_K)) for c in (0, 1)]
    assert score("epe_nas", net, b) == pytest.approx(2 * abs(e[0] - e[1]) / 2, rel=1e-6)


def test_nwot_of_known_activation_patterns() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]]).view(3, 1, 1, 2)
    # codes (1,1), (1,0), (0,0): K = [[2,1,0],[1,2,1],[0,1,2]], det 4
    assert score("nwot", net, ProxyBatch(x, torch.tensor([0, 1, 0]), 2)) == pytest.approx(math.log(4.0))


def test_gradient_proxies_against_explicit_formulas() -> None:
    net, b = _mlp(seed=2), _batch(n=8)
    ws, gs = [w.detach() for w in _weights(net)], _grads(net, b)
    assert score("grad_norm", net, b) == pytest.approx(sum(float(g.norm()) for g in gs), rel=1e-6)
    assert score("snip", net, b) == pytest.approx(sum(float((w * g).abs().sum()) for w, g in zip(ws, gs)), rel=1e-6)
    assert score("plain", net, b) == pytest.approx(sum(float((w * g).sum()) for w, g in zip(ws, gs)), rel=1e-5)
    assert score("l2_norm", net, b) == pytest.approx(sum(float(w.norm()) for w in ws), rel=1e-6)
    assert score("params", net, b) == 3 * 4 + 4 + 4 * 2 + 2
    assert score("flops", net, b) == 3 * 4 + 4 * 2


def test_fisher_against_activation_gradients() -> None:
    net, b = _mlp(seed=5), _batch(n=8)
    lin1, lin2 = net[1], net[3]
    x = b.x.flatten(1)
    z1 = x @ lin1.weight.T + lin1.bias
    z2 = torch.relu(z1) @ lin2.weight.T + lin2.bias
    g1, g2 = torch.autograd.grad(nn.functional.cross_entropy(z2, b.y), [z1, z2])
    expected = sum(float(0.5 * (a * g).pow(2).mean(0).sum()) for a, g in ((z1.detach(), g1), (z2.detach(), g2)))
    assert score("fisher", net, b) == pytest.approx(expected, rel=1e-5)


def test_grasp_against_the_full_hessian() -> None:
    net, b = _mlp(seed=6, bias=False), _batch(n=8)
    w1, w2 = (w.detach() for w in _weights(net))
    n1 = w1.numel()

    def loss(theta: torch.Tensor) -> torch.Tensor:
        a, c = theta[:n1].view_as(w1), theta[n1:].view_as(w2)
        return nn.functional.cross_entropy(torch.relu(b.x.flatten(1).double() @ a.T) @ c.T, b.y)

    theta = torch.cat([w1.flatten(), w2.flatten()]).double()
    g = torch.autograd.functional.jacobian(loss, theta)
    hess = torch.autograd.functional.hessian(loss, theta)
    expected = float(-(theta * (hess @ g)).sum())
    assert score("grasp", net, b) == pytest.approx(expected, rel=1e-4, abs=1e-9)


def test_zen_of_a_linear_map() -> None:
    # no BatchNorm: zen = log mean_n ||alpha * W eps_n||, W re-drawn N(0,1) first, then x, then eps
    net = nn.Sequential(nn.Flatten(), nn.Linear(3, 4, bias=False))
    b = _batch(n=6)
    gen = torch.Generator().manual_seed(7)
    w = torch.randn(4, 3, generator=gen)
    torch.randn(b.x.shape, generator=gen)
    eps = torch.randn(b.x.shape, generator=gen).flatten(1)
    expected = math.log(float((ZEN_ALPHA * eps @ w.T).double().norm(dim=1).mean()))
    assert score("zen", net, b, seed=7) == pytest.approx(expected, rel=1e-5)


def test_blox_model_params_and_flops_match_the_static_tables() -> None:
    from blox_env.costs import macs_table, params_table

    arch = Arch.from_blocks(8, 24, 33)
    b = proxy_batch("gaussian", batch_size=4, shape=(1, 8, 8), num_classes=10)
    res = compute_proxies(arch, b, config=MINI, proxies=["params", "flops"])
    assert res["params"].value == params_table(MINI)[arch.index]
    assert res["flops"].value == macs_table(MINI)[arch.index]


def test_all_proxies_on_a_blox_model_are_deterministic_per_seed() -> None:
    arch, b = Arch.from_blocks(1, 9, 24), proxy_batch("digits", batch_size=16)
    state = torch.random.get_rng_state()
    first = compute_proxies(arch, b, init_seed=0, config=MINI)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is left alone
    again = compute_proxies(arch, b, init_seed=0, config=MINI)
    other = compute_proxies(arch, b, init_seed=1, config=MINI, proxies=["l2_norm", "synflow", "snip"])
    assert list(first) == list(PROXIES)
    for name in PROXIES:
        assert first[name].value == again[name].value or (math.isnan(first[name].value)
                                                          and math.isnan(again[name].value)), name
        assert first[name].seconds >= 0
    for name in ("l2_norm", "synflow", "snip"):
        assert other[name].value != first[name].value
    assert all(math.isfinite(first[n].value) for n in PROXIES)
    # the shared-model schedule gives what a fresh copy gives
    model = init_model(arch, init_seed=0, config=MINI)
    for name in PROXIES:
        assert score(name, model, b, seed=0) == pytest.approx(first[name].value, rel=1e-9), name
