"""GCN accuracy predictor (BRP-NAS style) on DGL, and the graph-regression machinery GIN reuses.

The model: a stack of graph convolutions over the architecture graph of
:mod:`blox_env.datasets.graphs` (one-hot node types, a global node linked to
every node, self-loops), ReLU and dropout after each layer, and a linear head
on the GLOBAL node's final embedding (BRP-NAS reads the graph out there rather
than pooling). Defaults are BRP-NAS's: 4 layers of width 600, dropout 0.2,
AdamW (lr 3.5e-4, weight decay 5e-4), cosine schedule, 250 epochs, batch 64,
MSE on standardised targets. ``GraphConv`` uses ``norm="both"``; self-loops (on
by default) plus the global node mean no node has zero in-degree.

Proxy features. ``GCNPredictor(features=ProxyFeatures(...))`` (:mod:`.features`; GIN
inherits it) concatenates each model's ``k`` transformed zero-cost proxies to the
global node's final embedding, so the head is ``Linear(hidden + k, 1)``. Why at the
readout and not as an input of the global node: the proxies describe the whole model,
not a node; fed to the global node they would pass through every layer's degree
normalisation and ReLU, mixed with the node-type one-hots, while at the readout each
proxy gets a direct (linear) path to the output that the training can weight with
either sign (several proxies rank Blox-mini's models backwards), as in the baselines'
concatenation. The graph encoder, its input and the graph datasets stay exactly those
of the predictor without features (``features=None`` builds the same model as before).

Mini-batches are built per step with :func:`~blox_env.datasets.graphs.batch_graphs`
(vectorised templates, cheaper than ``dgl.batch`` of stored graphs). After
``fit`` the predictor reports ``fit_time_s_`` and ``throughput_`` (training
graphs processed per second, forward + backward).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import nn

from blox_env.datasets.dgl_import import dgl
from blox_env.datasets.graphs import N_FEATURES, batch_graphs
from blox_env.errors import InvalidArgumentError
from blox_env.predictors.base import (
    BasePredictor,
    TargetScaler,
    check_config,
    config_dict,
    config_from_dict,
    load_state,
    meta_keys,
    rng_seed,
    save_state,
    scaler_from_meta,
    seeded_torch,
    train_torch_regressor,
)
from blox_env.predictors.features import (
    ProxyFeatures,
    check_features,
    features_meta,
    read_features,
    write_features,
)
from blox_env.predictors.folders import number
from blox_env.space import as_indices

__all__ = ["GCNConfig", "GCNPredictor", "GraphEncoder", "GraphRegressor", "global_node_ids"]


@dataclass(frozen=True)
class GCNConfig:
    """Hyperparameters of a graph predictor (defaults: BRP-NAS's GCN)."""

    layers: int = 4
    hidden: int = 600
    dropout: float = 0.2
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    epochs: int = 250
    batch_size: int = 64
    self_loops: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_config(self)


def encoder_shapes(conv_shapes: Callable[[int, int], dict[str, tuple[int, ...]]], *, layers: int,
                   hidden: int) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of a :class:`GraphEncoder` (``convs.i.*``), computed without building it."""
    dims = [N_FEATURES] + [hidden] * layers
    return {f"convs.{i}.{k}": s for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))
            for k, s in conv_shapes(a, b).items()}


def global_node_ids(graph: dgl.DGLGraph) -> torch.Tensor:
    """Ids of each member graph's global node (the last node of every graph) in a batched graph."""
    return torch.cumsum(graph.batch_num_nodes(), 0) - 1


class GraphEncoder(nn.Module):
    """Graph convolutions -> the global node's embedding of every graph in a batch."""

    def __init__(self, *, make_conv: Callable[[int, int], nn.Module], layers: int, hidden: int,
                 dropout: float) -> None:
        super().__init__()
        dims = [N_FEATURES] + [hidden] * layers
        self.convs = nn.ModuleList(make_conv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = nn.Dropout(dropout)
        self.out_dim = hidden

    def forward(self, graph: dgl.DGLGraph) -> torch.Tensor:
        with graph.local_scope():  # intermediate features never leak into the caller's graph
            h = graph.ndata["feat"]
            for conv in self.convs:
                h = self.dropout(torch.relu(conv(graph, h)))
            return h[global_node_ids(graph).to(h.device)]


class GraphRegressor(nn.Module):
    """Encoder + linear head: one scalar per graph; with ``extra > 0`` the head also reads ``extra`` per-graph
    features concatenated to the readout (``forward(graph, extra)``)."""

    def __init__(self, encoder: GraphEncoder, *, extra: int = 0) -> None:
        super().__init__()
        self.encoder = encoder
        self.extra = extra
        self.head = nn.Linear(encoder.out_dim + extra, 1)

    def forward(self, graph: dgl.DGLGraph, extra: torch.Tensor | None = None) -> torch.Tensor:
        h = self.encoder(graph)
        if (extra is None) != (self.extra == 0):
            raise InvalidArgumentError(f"this regressor takes {self.extra} extra features per graph, got "
                                       f"{'none' if extra is None else tuple(extra.shape)}")
        if extra is not None:
            h = torch.cat([h, extra], dim=1)
        return self.head(h).squeeze(-1)


class GCNPredictor(BasePredictor):
    """Regression of a metric from the architecture graph with DGL ``GraphConv`` layers.

    ``GCNPredictor(config=GCNConfig(...))`` or keyword overrides of the defaults,
    e.g. ``GCNPredictor(epochs=20, hidden=32)`` for a quick run. ``features``: optional per-model
    proxy features concatenated to the readout (module docstring).
    """

    config_cls: ClassVar[type] = GCNConfig

    def __init__(self, *, config: Any = None, features: ProxyFeatures | None = None, **overrides: Any) -> None:
        base = config if config is not None else self.config_cls()
        if not isinstance(base, self.config_cls):
            raise _bad_config(self, base)
        try:
            self.config = dataclasses.replace(base, **overrides)
        except TypeError as exc:
            allowed = ", ".join(f.name for f in dataclasses.fields(self.config_cls))
            raise _bad_config(self, overrides, allowed) from exc
        self.features = check_features(features)
        self.scaler = TargetScaler()
        self.model: GraphRegressor | None = None
        self.fitted_ = False
        self.fit_time_s_ = float("nan")
        self.throughput_ = float("nan")
        self.n_train_ = 0

    # model ------------------------------------------------------------------------
    @staticmethod
    def make_conv(in_dim: int, out_dim: int) -> nn.Module:
        from dgl.nn.pytorch import GraphConv

        return GraphConv(in_dim, out_dim, norm="both", weight=True, bias=True)

    @staticmethod
    def conv_shapes(in_dim: int, out_dim: int) -> dict[str, tuple[int, ...]]:
        """Parameter shapes of one ``make_conv(in_dim, out_dim)`` (DGL ``GraphConv``: weight ``[in, out]``)."""
        return {"weight": (in_dim, out_dim), "bias": (out_dim,)}

    def _state_shapes(self) -> dict[str, tuple[int, ...]]:
        """The state dict's shapes that the config implies: checked against a saved file before building."""
        c = self.config
        enc = encoder_shapes(self.conv_shapes, layers=c.layers, hidden=c.hidden)
        return {**{f"encoder.{k}": s for k, s in enc.items()}, "head.weight": (1, c.hidden + self._n_extra()),
                "head.bias": (1,)}

    def _n_extra(self) -> int:
        return 0 if self.features is None else self.features.n_features

    def _build(self) -> GraphRegressor:
        c = self.config
        enc = GraphEncoder(make_conv=self.make_conv, layers=c.layers, hidden=c.hidden, dropout=c.dropout)
        return GraphRegressor(enc, extra=self._n_extra()).to(c.device)

    def _extra(self, idx: np.ndarray) -> torch.Tensor:
        """The fitted features of models ``idx`` as a float32 tensor on the config's device."""
        assert self.features is not None
        return torch.from_numpy(self.features.transform(idx)).to(self.config.device)

    def _graphs(self, idx: np.ndarray) -> dgl.DGLGraph:
        return batch_graphs(idx, self_loops=self.config.self_loops).to(self.config.device)

    # protocol ---------------------------------------------------------------------
    def fit(self, archs: Any, y: Any, *, seed: int | np.random.Generator, **kw: Any) -> Self:
        """Train from scratch on ``(archs, y)``; ``seed`` fixes initialisation, dropout and shuffling;
        features (if any) are fitted on ``archs``."""
        idx, target = self._fit_inputs(archs, y, kw)
        s = rng_seed(seed)
        self.scaler = TargetScaler.fit(target)
        c = self.config
        extra = None
        if self.features is not None:
            self.features = self.features.fit(idx)
            extra = self._extra(idx)

        def make_input(pos: np.ndarray) -> Any:
            graphs = self._graphs(idx[pos])
            return graphs if extra is None else (graphs, extra[torch.from_numpy(pos).to(c.device)])

        with seeded_torch(s):
            self.model = self._build()
            secs = train_torch_regressor(self.model, make_input, self.scaler.transform(target),
                                         epochs=c.epochs, batch_size=c.batch_size, lr=c.lr,
                                         weight_decay=c.weight_decay, seed=s, device=c.device)
        self.fitted_ = True
        self.n_train_ = len(idx)
        self.fit_time_s_ = secs
        self.throughput_ = c.epochs * len(idx) / secs if secs > 0 else float("inf")
        return self

    @torch.no_grad()
    def predict(self, archs: Any, *, batch_size: int = 4096) -> np.ndarray:
        """Predicted metric (in the units of the training targets) for every model."""
        self._require_fitted()
        assert self.model is not None  # internal invariant: fitted_ implies a model
        idx = as_indices(archs)
        self.model.eval()
        out = [self.model(self._graphs(part), None if self.features is None else self._extra(part)).cpu().numpy()
               for part in (idx[lo : lo + batch_size] for lo in range(0, len(idx), batch_size))]
        return self.scaler.inverse(np.concatenate(out)) if out else np.zeros(0)

    # saving -----------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {"config": config_dict(self.config), "scaler": dataclasses.asdict(self.scaler),
                "n_train": self.n_train_, **features_meta(self.features)}

    def _write_arrays(self, folder: Path) -> None:
        assert self.model is not None
        save_state(folder, self.model)
        write_features(folder, self.features)

    @classmethod
    def _restore(cls, folder: Path, meta: dict[str, Any]) -> Self:
        meta_keys(meta, "config", "scaler", "n_train", optional=("features",))
        pred = cls(config=config_from_dict(cls.config_cls, meta["config"]),
                   features=read_features(folder, meta.get("features")))
        pred.scaler = scaler_from_meta(meta["scaler"])
        pred.n_train_ = int(number(meta["n_train"], what="n_train", integer=True, minimum=0))
        state = load_state(folder, pred._state_shapes())  # checked before the model is built
        pred.model = pred._build()
        pred.model.load_state_dict(state)
        pred.model.eval()
        pred.fitted_ = True
        return pred


def _bad_config(pred: Any, given: Any, allowed: str = "") -> Exception:
    what = f"unknown option(s) {sorted(given)}: allowed {allowed}" if allowed else \
        f"config must be a {pred.config_cls.__name__}, got {type(given).__name__}"
    return InvalidArgumentError(f"{type(pred).__name__}: {what}")
