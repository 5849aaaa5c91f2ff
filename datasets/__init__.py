"""Data for blox-env: the Zarr model store, the official release files, image data and graph data.

Installed as ``blox_env.datasets`` (never as a top-level ``datasets`` package). Sub-packages
:mod:`.store` (the store's layouts; :class:`~blox_env.BloxStore` and :func:`~blox_env.open_store` are
imported from ``blox_env``, their one documented path) and :mod:`.release` (import and download of the
official files); modules :mod:`.images` (+ :mod:`.cifar`, :mod:`.augment`, :mod:`.randaugment`),
:mod:`.graphs` (DGL) and :mod:`.synthetic`. The names below are imported on first use, so
``import blox_env.datasets`` pays for none of zarr, torch or DGL.
"""

from __future__ import annotations

from blox_env.lazy import lazy_exports

#: Public name -> the module that defines (or, for the sub-packages, exports) it.
_EXPORTS = {
    "download_release": "blox_env.datasets.release",
    "import_release": "blox_env.datasets.release",
    "ImageData": "blox_env.datasets.images",
    "ImageSplit": "blox_env.datasets.images",
    "load_data": "blox_env.datasets.images",
    "load_digits": "blox_env.datasets.images",
    "synthetic_images": "blox_env.datasets.images",
    "AugmentConfig": "blox_env.datasets.augment",
    "ArchGraphDataset": "blox_env.datasets.graphs",
    "DatasetSplit": "blox_env.datasets.graphs",
    "arch_to_graph": "blox_env.datasets.graphs",
    "batch_graphs": "blox_env.datasets.graphs",
    "synthetic_store": "blox_env.datasets.synthetic",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
