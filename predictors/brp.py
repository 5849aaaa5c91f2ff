"""BRP-NAS binary relation predictor: "is model a better than model b?", and rankings from it.

A shared GCN (:class:`~blox_env.predictors.gcn.GraphEncoder`) embeds each graph;
the two global-node embeddings are concatenated and an MLP
``[e_a, e_b] -> hidden -> 1`` gives a logit of "a has the higher target". The
logit is made antisymmetric, ``(f(a, b) - f(b, a)) / 2``, so
``compare(a, b) + compare(b, a) == 1`` and ``compare(a, a) == 0.5`` exactly.

Cheap by construction. The first MLP layer is linear in the concatenation, so
for embeddings ``E`` it splits into ``E @ W_a`` and ``E @ W_b``: every graph is
embedded ONCE and all pairwise logits of a set come from those two
projections. Training uses this too: each mini-batch of ``batch_size`` graphs is
embedded once and all of its ``B(B-1)/2`` pairs are scored with binary
cross-entropy (ties count as 0.5), i.e. the training pairs are all pairs inside
random batches, resampled every epoch.

``predict(archs)`` is each candidate's mean win probability against the other
candidates (when there are more than ``max_reference``, against a fixed evenly
spaced reference subset of them), so scores are comparable within one call;
``predict(archs, reference=train_archs)`` scores against a fixed set instead
(stable across calls, what a surrogate reward needs). ``rank(archs)`` sorts by
the score, best first.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import nn

from blox_env.datasets.dgl_import import dgl
from blox_env.datasets.graphs import batch_graphs
from blox_env.errors import InvalidArgumentError
from blox_env.predictors.base import (
    BasePredictor,
    check_config,
    config_dict,
    config_from_dict,
    load_state,
    meta_keys,
    rng_seed,
    save_state,
    seeded_torch,
)
from blox_env.predictors.folders import number
from blox_env.predictors.gcn import GCNPredictor, GraphEncoder, encoder_shapes
from blox_env.space import as_indices

__all__ = ["BRPConfig", "BRPPredictor", "RelationModel"]


@dataclass(frozen=True)
class BRPConfig:
    """Hyperparameters of the binary relation predictor (GCN part: BRP-NAS defaults)."""

    layers: int = 4
    hidden: int = 600
    dropout: float = 0.2
    classifier_hidden: int = 64
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    epochs: int = 250
    batch_size: int = 64
    self_loops: bool = True
    max_reference: int = 1024
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_config(self)


class RelationModel(nn.Module):
    """Shared graph encoder + antisymmetric pair classifier."""

    def __init__(self, config: BRPConfig) -> None:
        super().__init__()
        self.encoder = GraphEncoder(make_conv=GCNPredictor.make_conv, layers=config.layers, hidden=config.hidden,
                                    dropout=config.dropout)
        self.first = nn.Linear(2 * config.hidden, config.classifier_hidden)
        self.second = nn.Linear(config.classifier_hidden, 1)

    @staticmethod
    def state_shapes(config: BRPConfig) -> dict[str, tuple[int, ...]]:
        """Parameter shapes implied by ``config``, computed without building the model."""
        enc = encoder_shapes(GCNPredictor.conv_shapes, layers=config.layers, hidden=config.hidden)
        ch = config.classifier_hidden
        return {**{f"encoder.{k}": s for k, s in enc.items()}, "first.weight": (ch, 2 * config.hidden),
                "first.bias": (ch,), "second.weight": (1, ch), "second.bias": (1,)}

    def _half(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projections of embeddings through the a-half and the b-half of the first layer."""
        h = emb.shape[-1]
        return emb @ self.first.weight[:, :h].T, emb @ self.first.weight[:, h:].T

    def logit_matrix(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
        """``[len(a), len(b)]`` antisymmetric logits of "a_i beats b_j" from embeddings."""
        pa, qa = self._half(emb_a)
        pb, qb = self._half(emb_b)
        bias, w2 = self.first.bias, self.second.weight[0]
        forward = torch.relu(pa[:, None, :] + qb[None, :, :] + bias) @ w2
        backward = torch.relu(pb[None, :, :] + qa[:, None, :] + bias) @ w2
        return (forward - backward) / 2  # the second layer's bias cancels

    def pair_logits(self, emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
        """Logits of aligned pairs ``(a_i, b_i)``."""
        pa, qa = self._half(emb_a)
        pb, qb = self._half(emb_b)
        bias, w2 = self.first.bias, self.second.weight[0]
        return (torch.relu(pa + qb + bias) @ w2 - torch.relu(pb + qa + bias) @ w2) / 2


class BRPPredictor(BasePredictor):
    """Pairwise ranking predictor (BRP-NAS) on DGL graphs; see the module docstring.

    ``BRPPredictor(config=BRPConfig(...))`` or keyword overrides, e.g. ``BRPPredictor(epochs=20, hidden=32)``.
    """

    config_cls: ClassVar[type] = BRPConfig

    def __init__(self, *, config: BRPConfig | None = None, **overrides: Any) -> None:
        base = config if config is not None else BRPConfig()
        if not isinstance(base, BRPConfig):
            raise InvalidArgumentError(f"config must be a BRPConfig, got {type(base).__name__}")
        names = {f.name for f in dataclasses.fields(BRPConfig)}
        if set(overrides) - names:
            raise InvalidArgumentError(f"unknown option(s) {sorted(set(overrides) - names)}: allowed {sorted(names)}")
        self.config = dataclasses.replace(base, **overrides)
        self.model: RelationModel | None = None
        self.fitted_ = False
        self.fit_time_s_ = float("nan")
        self.fit_steps_ = 0
        self.throughput_ = float("nan")
        self.n_train_ = 0

    def _graphs(self, idx: np.ndarray) -> dgl.DGLGraph:
        return batch_graphs(idx, self_loops=self.config.self_loops).to(self.config.device)

    def fit(self, archs: Any, y: Any, *, seed: int | np.random.Generator, warm_start: bool = False,
            steps: int | None = None, **kw: Any) -> Self:
        """Train on all pairs inside random mini-batches; label = 1 if a's target is higher (0.5 on ties).

        By default a fresh model trains ``config.epochs`` epochs (shuffled mini-batches of ``batch_size``).
        ``warm_start=True`` continues from the current weights when the predictor is fitted (a fresh
        model otherwise), e.g. refits of a search whose training set grows by a few models a round.
        ``steps=k`` trains ``k`` mini-batch steps instead of whole epochs, each on ``min(batch_size, n)``
        models drawn without replacement, so a fit's cost does not grow with the training set. The
        learning rate follows a cosine from ``lr`` to 0 over the fit either way.
        """
        idx, target = self._fit_inputs(archs, y, kw)
        if not isinstance(warm_start, (bool, np.bool_)):
            raise InvalidArgumentError(f"warm_start must be True or False, got {warm_start!r}")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
            raise InvalidArgumentError(f"steps must be a positive integer or None, got {steps!r}")
        s = rng_seed(seed)
        c = self.config
        rng = np.random.default_rng(s)
        y_t = torch.as_tensor(target, dtype=torch.float32, device=c.device)
        n = len(idx)
        if steps is None:
            batches = [perm[lo : lo + c.batch_size] for perm in (rng.permutation(n) for _ in range(c.epochs))
                       for lo in range(0, n, c.batch_size)]
        else:
            size = min(c.batch_size, n)
            batches = [rng.choice(n, size=size, replace=False) for _ in range(int(steps))]
        per_epoch = -(-n // c.batch_size)
        with seeded_torch(s):
            model = self.model if warm_start and self.model is not None else RelationModel(c).to(c.device)
            opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs if steps is None else int(steps))
            start = time.perf_counter()
            model.train()
            for k, pos in enumerate(batches):
                if len(pos) >= 2:
                    emb = model.encoder(self._graphs(idx[pos]))
                    i, j = torch.triu_indices(len(pos), len(pos), offset=1, device=c.device)
                    logits = model.logit_matrix(emb, emb)[i, j]
                    yb = y_t[torch.from_numpy(pos).to(c.device)]
                    labels = (yb[i] > yb[j]).float() + 0.5 * (yb[i] == yb[j]).float()
                    loss = nn.functional.binary_cross_entropy_with_logits(logits, labels)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                if steps is not None or (k + 1) % per_epoch == 0:
                    sched.step()  # per epoch by default, per step with steps=
            secs = time.perf_counter() - start
        model.eval()
        self.model = model
        self.fitted_ = True
        self.n_train_ = n
        self.fit_time_s_ = secs
        self.fit_steps_ = sum(len(pos) >= 2 for pos in batches)
        self.throughput_ = sum(len(pos) for pos in batches) / secs if secs > 0 else float("inf")
        return self

    @torch.no_grad()
    def embed(self, archs: Any, *, batch_size: int = 4096) -> torch.Tensor:
        """Global-node embeddings ``[N, hidden]`` (each graph embedded once)."""
        self._require_fitted()
        assert self.model is not None  # internal invariant
        idx = as_indices(archs)
        parts = [self.model.encoder(self._graphs(idx[lo : lo + batch_size])) for lo in range(0, len(idx), batch_size)]
        return torch.cat(parts) if parts else torch.zeros((0, self.config.hidden))

    @torch.no_grad()
    def compare(self, a: Any, b: Any) -> np.ndarray:
        """Probability that ``a[i]`` has a higher target than ``b[i]`` (one side may be a single model)."""
        ia, ib = as_indices(a), as_indices(b)
        if len(ia) == 1 and len(ib) > 1:
            ia = np.repeat(ia, len(ib))
        elif len(ib) == 1 and len(ia) > 1:
            ib = np.repeat(ib, len(ia))
        if len(ia) != len(ib):
            raise InvalidArgumentError(f"compare needs equally long a and b (or one single model), "
                                       f"got {len(ia)} and {len(ib)}")
        uniq, inverse = np.unique(np.concatenate([ia, ib]), return_inverse=True)
        emb = self.embed(uniq)
        assert self.model is not None
        ea, eb = emb[inverse[: len(ia)]], emb[inverse[len(ia) :]]
        return torch.sigmoid(self.model.pair_logits(ea, eb)).cpu().numpy().astype(np.float64)

    @torch.no_grad()
    def win_matrix(self, archs: Any) -> np.ndarray:
        """``[N, N]`` probabilities that model i beats model j (0.5 on the diagonal)."""
        emb = self.embed(archs)
        assert self.model is not None
        return torch.sigmoid(self.model.logit_matrix(emb, emb)).cpu().numpy().astype(np.float64)

    @torch.no_grad()
    def predict(self, archs: Any, *, reference: Any = None, chunk: int = 256) -> np.ndarray:
        """Ranking score: mean win probability against the other candidates (or a fixed reference set).

        With ``reference=None`` the candidates are compared with each other (with
        an evenly spaced subset of them when there are more than
        ``max_reference``), so scores are comparable within one call only. Pass
        ``reference=`` (e.g. the training models) for scores that do not depend
        on which candidates are asked about together, as a surrogate reward needs.
        """
        emb = self.embed(archs)
        assert self.model is not None
        n = len(emb)
        if n == 0:
            return np.zeros(0)
        if reference is not None:
            ref_emb = self.embed(reference)
            if len(ref_emb) == 0:
                raise InvalidArgumentError("reference is empty: give at least one model")
            is_ref = np.zeros(n, dtype=bool)
        else:
            if n <= self.config.max_reference:
                ref = np.arange(n)
            else:
                ref = np.unique(np.linspace(0, n - 1, self.config.max_reference).round().astype(np.int64))
            is_ref = np.zeros(n, dtype=bool)
            is_ref[ref] = True
            ref_emb = emb[torch.from_numpy(ref)]
        total = np.empty(n)
        for lo in range(0, n, chunk):
            probs = torch.sigmoid(self.model.logit_matrix(emb[lo : lo + chunk], ref_emb))
            total[lo : lo + chunk] = probs.sum(dim=1).cpu().numpy()
        # a candidate in its own reference set met itself once, with probability exactly 0.5: remove that
        others = len(ref_emb) - is_ref.astype(np.float64)
        return (total - 0.5 * is_ref) / np.maximum(others, 1.0)

    def rank(self, archs: Any, *, reference: Any = None) -> np.ndarray:
        """Positions into ``archs``, predicted best first (stable on ties)."""
        return np.argsort(-self.predict(archs, reference=reference), kind="stable")

    # saving -----------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {"config": config_dict(self.config), "n_train": self.n_train_}

    def _write_arrays(self, folder: Path) -> None:
        assert self.model is not None
        save_state(folder, self.model)

    @classmethod
    def _restore(cls, folder: Path, meta: dict[str, Any]) -> Self:
        meta_keys(meta, "config", "n_train")
        pred = cls(config=config_from_dict(BRPConfig, meta["config"]))
        pred.n_train_ = int(number(meta["n_train"], what="n_train", integer=True, minimum=0))
        state = load_state(folder, RelationModel.state_shapes(pred.config))  # checked before the model is built
        pred.model = RelationModel(pred.config).to(pred.config.device)
        pred.model.load_state_dict(state)
        pred.model.eval()
        pred.fitted_ = True
        return pred
