"""Zero-cost proxies of an untrained Blox model ([train] extra): 13 scores from one minibatch.

A proxy scores a freshly initialised network from one forward (and usually one backward) pass, so a search
can rank models without training them. The 13 are the ones NAS-Bench-Suite-Zero tabulates, each written
here from its paper's definition (:mod:`.measures` cites them).

Conventions (one place; the store's ``proxies/`` attributes record them, :data:`CONVENTIONS`):

- **Initialisation**: the model is built by :func:`blox_env.model.build_model` (PyTorch's default init)
  under ``torch.manual_seed(init_seed)`` inside a forked RNG (the global RNG is left as it was); every proxy
  of one (model, init seed) starts from the same weights (each works on its own copy). ``zen`` re-initialises
  as its paper does (conv/linear weights N(0, 1), biases 0, BatchNorm gamma 1, beta 0), seeded by ``init_seed``.
- **Data**: one batch of ``batch_size`` (default 64) training images, drawn without replacement by
  ``data_seed`` (default 0), the same batch for every model and seed, normalised by the data set's mean/std
  (:func:`proxy_batch`: digits, a CIFAR folder, or ``"gaussian"``: N(0, 1) images with uniform labels).
  Data-free proxies ignore the images: ``synflow`` feeds one all-ones image, ``zen`` N(0, 1) images of the
  batch's shape; ``params``/``flops``/``l2_norm`` need no pass.
- **Loss**: mean cross-entropy of the logits against the batch labels (grad_norm, snip, grasp, fisher, plain).
- **BatchNorm**: train mode (batch statistics) for every proxy, as the zero-cost reference code runs them,
  except ``synflow``: eval mode with its initial statistics (an affine map equal to the identity up to eps),
  because with one constant input batch statistics would normalise everything to zero.
- **Layers**: the parameter-based proxies sum over the weights of every convolution and linear layer
  (biases and BatchNorm excluded), the pruning literature's convention.
- **Sign**: every score is "higher is better" as returned: ``jacov`` is the negated Mellor et al. (2020)
  penalty, ``grasp`` is the published ``-theta * Hg`` summed, ``plain`` is ``theta * g`` summed (it may
  correlate negatively; it is reported as defined).
- **synflow overflow**: computed in float64 (up to 1.8e308; full-width BLOX models score about 1e33 - 1e40
  at 32x32x3, Blox-mini's about 1e10 - 1e24), no per-layer scaling needed; a non-finite result is returned as
  NaN (missing), never as inf.
- **Determinism**: same arch, batch, ``init_seed`` and thread count give the same numbers.
"""

from __future__ import annotations

from blox_env.proxies.inputs import ProxyBatch, proxy_batch
from blox_env.proxies.measures import (
    CONVENTIONS,
    DATA_FREE,
    PROXIES,
    ProxyResult,
    check_proxies,
    compute_proxies,
    init_model,
    score,
)

__all__ = ["CONVENTIONS", "DATA_FREE", "PROXIES", "ProxyBatch", "ProxyResult", "check_proxies", "compute_proxies",
           "init_model", "proxy_batch", "score"]
