"""Names fixed by the store format: format id, version, metric and env column names."""

from __future__ import annotations

__all__ = [
    "CURVE_METRICS",
    "ENV_COLUMNS",
    "FINAL_METRICS",
    "INDEX_FILL",
    "READABLE_VERSIONS",
    "STATIC_METRICS",
    "STORE_FORMAT",
    "STORE_VERSION",
    "is_accuracy",
]

STORE_FORMAT = "blox-store"
#: Format 2: every array's fill value is its missing sentinel (``Encoding.fill_missing``), every chunk is
#: written, ``index`` fills with -1, root attrs hold ``n_rows`` and per-array ``checksums``. Format 1 stores
#: (fill 0 for curves, absent chunks possible) are still read; their absent chunks are detected explicitly.
STORE_VERSION = 2
READABLE_VERSIONS = (1, 2)
#: Fill value of ``index``: never a valid model index, so an absent chunk cannot pass validation.
INDEX_FILL = -1
#: Per-epoch metrics, arrays ``[S, N, E]``.
CURVE_METRICS = ("val_top1", "train_top1", "train_loss", "train_top5", "val_loss", "val_top5")
#: Metrics of the final model, arrays ``[S, N]``.
FINAL_METRICS = ("test_top1", "train_time_s", "test_loss", "test_top5")
STATIC_METRICS = ("params", "flops")
ENV_COLUMNS = (
    "codebase_commit", "codebase_version", "cuda", "driver", "gpu", "platform", "ptflops_version", "python",
    "torch_commit", "torch_cuda_version", "torch_version", "torchvision_version",
)


def is_accuracy(metric: str) -> bool:
    """Whether ``metric`` is an accuracy in percent (a top-1/top-5 column): the one place this is decided."""
    return "top1" in metric or "top5" in metric
