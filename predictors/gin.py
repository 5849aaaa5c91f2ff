"""GIN accuracy predictor: the second graph family, same training recipe and API as the GCN.

Each layer is a DGL ``GINConv`` (sum aggregation, learnable epsilon) whose
update is a two-layer MLP, so the layer is as expressive as the 1-WL test
(Xu et al., 2019) where GCN's normalised mean is not. The readout is again the
global node's embedding. GIN adds the node's own feature through ``(1 + eps)``,
so self-loops are off by default; width defaults to 256 because every layer
holds two linear maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from blox_env.predictors.gcn import GCNConfig, GCNPredictor

__all__ = ["GINConfig", "GINPredictor"]


@dataclass(frozen=True)
class GINConfig(GCNConfig):
    """Hyperparameters of the GIN predictor (BRP-NAS training recipe, narrower layers, no self-loops)."""

    hidden: int = 256
    self_loops: bool = False


class GINPredictor(GCNPredictor):
    """Regression of a metric from the architecture graph with DGL ``GINConv`` layers.

    ``GINPredictor(config=GINConfig(...))`` or keyword overrides, e.g. ``GINPredictor(epochs=20)``.
    """

    config_cls: ClassVar[type] = GINConfig

    @staticmethod
    def make_conv(in_dim: int, out_dim: int) -> nn.Module:
        from dgl.nn.pytorch import GINConv

        mlp = nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim))
        return GINConv(mlp, aggregator_type="sum", learn_eps=True)

    @staticmethod
    def conv_shapes(in_dim: int, out_dim: int) -> dict[str, tuple[int, ...]]:
        """Parameter shapes of one GIN layer: epsilon and the two linear maps of its MLP."""
        return {"eps": (1,), "apply_func.0.weight": (out_dim, in_dim), "apply_func.0.bias": (out_dim,),
                "apply_func.2.weight": (out_dim, out_dim), "apply_func.2.bias": (out_dim,)}
