"""Image data for training BLOX models: CIFAR-100/10 from a local folder, scikit-learn digits, a synthetic set.

What: every loader returns an :class:`ImageData` whose splits hold *raw* uint8 images ``[N, C, H, W]``
and int64 labels; augmentation and normalisation happen per batch (:func:`iterate_batches`,
:mod:`blox_env.datasets.augment`), so one copy of the data serves training and evaluation.

Why: the BLOX benchmark trained every model on CIFAR-100 with a fixed train/validation split; the
search tooling needs exactly that split, plus small real (digits) and synthetic sets that run on CPU
in seconds. Nothing is ever downloaded.

- **CIFAR** (:func:`load_cifar`): the standard python pickles (``cifar-100-python/{train,test,meta}``,
  ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``) read with ``encoding="bytes"``
  by a restricted unpickler that allows only the globals needed to rebuild a numpy array (plus
  ``_codecs.encode(str, "latin1")``, which Python 3 protocol-2 pickles use for ``bytes``); any other
  global is refused before it is resolved, so a hostile file executes nothing. ``meta`` files are
  optional (they only provide label names). Split rule (the original BLOX one, generalised to any
  size): ``perm = np.random.RandomState(0).permutation(n_train)``; the first ``n_train - n_train // 10``
  entries of ``perm`` index the training split, the last ``n_train // 10`` the validation split
  (45,000 / 5,000 for the official 50,000 images); the official test images are the test split.
  Mean/std are the usual published constants.
- **Digits** (:func:`load_digits`): scikit-learn's bundled 1,797 8x8 images, scaled to 0..255 with
  ``round(v * 255 / 16)`` (half to even), split with a seeded stratified rule, optionally noised and
  zero-padded; mean/std from the training split.
- **Synthetic** (:func:`synthetic_images`): class prototypes plus Gaussian noise, for unit tests.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from blox_env.datasets.augment import AugmentConfig, augment_batch, iterate_batches, normalise
from blox_env.errors import BloxError, InvalidArgumentError, StoreNotFoundError

__all__ = [
    "AugmentConfig",
    "ImageData",
    "ImageDataFormatError",
    "ImageSplit",
    "UnsafePickleError",
    "augment_batch",
    "blox_split_indices",
    "find_cifar_folder",
    "iterate_batches",
    "load_cifar",
    "load_data",
    "load_digits",
    "normalise",
    "restricted_unpickle",
    "synthetic_images",
]


class ImageDataFormatError(BloxError, ValueError):
    """An image data file exists but does not hold what its format promises."""


class UnsafePickleError(ImageDataFormatError):
    """A pickle asked for a global outside the allow-list; nothing from it was executed."""


class ImageSplit(NamedTuple):
    """One split: raw uint8 images ``[N, C, H, W]`` and int64 labels ``[N]``."""

    x: torch.Tensor
    y: torch.Tensor


class ImageData(NamedTuple):
    """A data set with train/val/test splits and the per-channel statistics used to normalise it."""

    name: str
    train: ImageSplit
    val: ImageSplit
    test: ImageSplit
    num_classes: int
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    provenance: dict[str, Any]


# --------------------------------------------------------------------------- CIFAR

CIFAR_STATS: dict[int, tuple[tuple[float, ...], tuple[float, ...]]] = {
    100: ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    10: ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
_CIFAR_LAYOUT: dict[int, tuple[str, tuple[str, ...], tuple[str, ...], str, bytes, bytes]] = {
    # folder, train files, test files, meta file, label key, label-name key
    100: ("cifar-100-python", ("train",), ("test",), "meta", b"fine_labels", b"fine_label_names"),
    10: ("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "batches.meta",
         b"labels", b"label_names"),
}

try:  # numpy >= 2 (numpy 1.26 also ships numpy._core)
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - older numpy
    from numpy.core.multiarray import _reconstruct as _np_reconstruct


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"refusing to rebuild an array of type {subtype!r}; only numpy.ndarray is allowed")
    return _np_reconstruct(subtype, shape, dtype)


def _dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    if not isinstance(spec, str | bytes):
        raise UnsafePickleError(f"refusing numpy dtype spec {spec!r}; only plain dtype strings are allowed")
    dtype = np.dtype(spec, bool(align), bool(copy))
    if dtype.hasobject:
        raise UnsafePickleError(f"refusing object dtype {spec!r}; image arrays hold numbers only")
    return dtype


def _encode(text: Any, encoding: Any = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("refusing _codecs.encode other than (str, 'latin1')")
    return text.encode("latin1")


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only :data:`_ALLOWED_GLOBALS` (each a checked wrapper); every other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in _ALLOWED_GLOBALS)
            raise UnsafePickleError(f"refusing global {module}.{name}; allowed: {allowed}") from None


def restricted_unpickle(path: str | Path) -> Any:
    """Load a CIFAR-style pickle (``encoding="bytes"``) without resolving any global outside the allow-list."""
    path = Path(path)
    with path.open("rb") as fh:
        try:
            return _RestrictedUnpickler(fh, encoding="bytes").load()
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"{path}: {exc}") from None
        except OSError:
            raise
        except Exception as exc:  # truncated, garbage or inconsistent pickles: all format errors
            raise ImageDataFormatError(f"{path}: not a readable CIFAR python pickle ({exc})") from None


def blox_split_indices(n_train: int) -> tuple[np.ndarray, np.ndarray]:
    """The BLOX train/val split of ``n_train`` training images: ``RandomState(0).permutation``, last tenth = val."""
    if isinstance(n_train, bool) or not isinstance(n_train, int | np.integer) or n_train < 0:
        raise InvalidArgumentError(f"n_train must be an int >= 0, got {n_train!r}")
    perm = np.random.RandomState(0).permutation(int(n_train))
    n_val = int(n_train) // 10
    return perm[: n_train - n_val], perm[n_train - n_val:]


def _check_variant(variant: object) -> int:
    if isinstance(variant, bool) or variant not in _CIFAR_LAYOUT:
        raise InvalidArgumentError(f"variant must be 100 or 10, got {variant!r}")
    return int(variant)  # type: ignore[call-overload]


def find_cifar_folder(root: str | Path, *, variant: int = 100) -> Path | None:
    """The folder holding the CIFAR-``variant`` python files: ``root`` itself or its standard subfolder."""
    folder, train, test, *_ = _CIFAR_LAYOUT[_check_variant(variant)]
    root = Path(root).expanduser()
    for candidate in dict.fromkeys((root, root / folder)):
        if all((candidate / f).is_file() for f in (*train, *test)):
            return candidate
    return None


def _read_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    raw = restricted_unpickle(path)
    if not isinstance(raw, dict):
        raise ImageDataFormatError(f"{path}: expected a pickled dict, got {type(raw).__name__}")
    batch = {(k.encode() if isinstance(k, str) else k): v for k, v in raw.items()}
    data, labels = batch.get(b"data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} array {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ImageDataFormatError(f"{path}: b'data' must be a uint8 array [N, 3072], got {got}")
    problem = f"{path}: {label_key!r} must list {len(data)} int labels in [0, {num_classes})"
    if not isinstance(labels, list | np.ndarray):
        raise ImageDataFormatError(f"{problem}, got {type(labels).__name__}")
    try:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise ImageDataFormatError(f"{problem}; they are not integers") from None
    if len(y) != len(data) or (len(y) and (y.min() < 0 or y.max() >= num_classes)):
        raise ImageDataFormatError(f"{problem}, got {len(y)} in [{y.min(initial=0)}, {y.max(initial=0)}]")
    return data.reshape(-1, 3, 32, 32), y


def _label_names(path: Path, key: bytes) -> list[str] | None:
    if not path.is_file():
        return None
    meta = restricted_unpickle(path)
    names = meta.get(key, meta.get(key.decode())) if isinstance(meta, dict) else None
    if not isinstance(names, list):
        raise ImageDataFormatError(f"{path}: expected a dict with a list {key!r}")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def load_cifar(root: str | Path, *, variant: int = 100) -> ImageData:
    """CIFAR-100 (``variant=100``) or CIFAR-10 from a local folder in the standard python format.

    ``root`` is the dataset folder itself or its parent. Splits follow :func:`blox_split_indices`.
    """
    variant = _check_variant(variant)
    folder_name, train_files, test_files, meta_file, label_key, names_key = _CIFAR_LAYOUT[variant]
    folder = find_cifar_folder(root, variant=variant)
    if folder is None:
        base = Path(root).expanduser()
        raise StoreNotFoundError(
            f"no CIFAR-{variant} python data at {base}: looked for {', '.join((*train_files, *test_files))} in "
            f"{base} and in {base / folder_name}; extract the official {folder_name} archive there "
            "(blox-env never downloads it)")
    train_parts = [_read_batch(folder / f, label_key, variant) for f in train_files]
    test_parts = [_read_batch(folder / f, label_key, variant) for f in test_files]
    x_all, y_all = np.concatenate([p[0] for p in train_parts]), np.concatenate([p[1] for p in train_parts])
    x_test, y_test = np.concatenate([p[0] for p in test_parts]), np.concatenate([p[1] for p in test_parts])
    train_idx, val_idx = blox_split_indices(len(x_all))

    def split(x: np.ndarray, y: np.ndarray) -> ImageSplit:
        return ImageSplit(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)))

    data = (split(x_all[train_idx], y_all[train_idx]), split(x_all[val_idx], y_all[val_idx]), split(x_test, y_test))
    mean, std = CIFAR_STATS[variant]
    provenance = {
        "source": str(folder), "format": "CIFAR python pickles", "variant": variant,
        "split_rule": "np.random.RandomState(0).permutation(n_train): first n_train - n_train // 10 = train, "
                      "last n_train // 10 = val; official test set = test",
        "sizes": {"train": len(train_idx), "val": len(val_idx), "test": len(x_test)}, "seed": 0,
        "mean_std": "published CIFAR constants", "label_names": _label_names(folder / meta_file, names_key),
    }
    return ImageData(f"cifar{variant}", *data, num_classes=variant, channels=3, image_size=32,
                     mean=mean, std=std, provenance=provenance)


# --------------------------------------------------------------------------- digits and synthetic


def _check_count(name: str, value: object, *, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise InvalidArgumentError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _stratified_take(y: np.ndarray, pool: np.ndarray, n: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``n`` of ``pool`` keeping class proportions (largest remainder, ties at random); (picked, rest)."""
    classes, counts = np.unique(y[pool], return_counts=True)
    quota = counts * n / counts.sum()
    take = np.floor(quota).astype(np.int64)
    extra = n - int(take.sum())
    if extra:
        order = np.lexsort((rng.random(len(classes)), -(quota - take)))
        take[order[:extra]] += 1
    picked = np.sort(np.concatenate(
        [rng.permutation(pool[y[pool] == c])[:k] for c, k in zip(classes, take)] + [np.zeros(0, np.int64)]))
    return picked, np.setdiff1d(pool, picked)


def _stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of [0, 1]-scaled pixels (population std; std floored so it can divide)."""
    v = x.double().div(255.0).transpose(0, 1).reshape(x.shape[1], -1)
    return tuple(v.mean(1).tolist()), tuple(max(s, 1e-6) for s in v.std(1, unbiased=False).tolist())


def load_digits(*, seed: int = 0, n_val: int = 297, n_test: int = 300, train_limit: int | None = None,
                noise: float = 0.0, pad_to: int = 8) -> ImageData:
    """scikit-learn's 1,797 8x8 digits as a small real image set (1 channel, 10 classes).

    Test then validation images are drawn stratified by class with ``seed``; the rest is the training
    split, optionally cut to ``train_limit`` images (also stratified). ``noise`` adds Gaussian noise
    of std ``noise * 255`` (own seeded stream, so the split does not depend on it) before clipping;
    ``pad_to`` zero-pads the images, centred, to ``pad_to x pad_to``.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    seed, n_val, n_test = _check_count("seed", seed), _check_count("n_val", n_val), _check_count("n_test", n_test)
    pad_to = _check_count("pad_to", pad_to, low=8)
    if train_limit is not None:
        train_limit = _check_count("train_limit", train_limit, low=1)
    if isinstance(noise, bool) or not isinstance(noise, int | float) or not 0.0 <= noise < float("inf"):
        raise InvalidArgumentError(f"noise must be a finite float >= 0 (std as a fraction of 255), got {noise!r}")
    digits = sk_load_digits()
    images, y = np.asarray(digits.images, dtype=np.float64), np.asarray(digits.target, dtype=np.int64)
    if n_val + n_test >= len(y):
        raise InvalidArgumentError(f"n_val + n_test must leave training images: got {n_val} + {n_test}, "
                                   f"allowed at most {len(y) - 1} in total ({len(y)} digits)")
    rng = np.random.default_rng(seed)
    test_idx, rest = _stratified_take(y, np.arange(len(y)), n_test, rng)
    val_idx, train_idx = _stratified_take(y, rest, n_val, rng)
    if train_limit is not None and train_limit < len(train_idx):
        train_idx, _ = _stratified_take(y, train_idx, train_limit, rng)
    pixels = np.rint(images * 255.0 / 16.0)
    if noise > 0:
        pixels = np.rint(pixels + np.random.default_rng([seed, 1]).normal(0.0, noise * 255.0, pixels.shape))
    pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    before = (pad_to - 8) // 2
    pixels = np.pad(pixels, ((0, 0), (before, pad_to - 8 - before), (before, pad_to - 8 - before)))
    x = torch.from_numpy(np.ascontiguousarray(pixels[:, None]))
    labels = torch.from_numpy(y)
    train, val, test = (ImageSplit(x[i].clone(), labels[i].clone()) for i in (train_idx, val_idx, test_idx))
    mean, std = _stats(train.x)
    provenance = {
        "source": "sklearn.datasets.load_digits (UCI optical digits, bundled)", "scaling": "round(v * 255 / 16)",
        "split_rule": "seeded stratified: test, then val from the rest, rest = train (optionally cut to "
                      "train_limit, stratified)", "sizes": {"train": len(train_idx), "val": len(val_idx),
                                                            "test": len(test_idx)},
        "seed": seed, "noise": float(noise), "pad_to": pad_to, "train_limit": train_limit,
        "mean_std": "computed from the training split",
    }
    return ImageData("digits", train, val, test, num_classes=10, channels=1, image_size=pad_to,
                     mean=mean, std=std, provenance=provenance)


def synthetic_images(*, n_train: int = 256, n_val: int = 64, n_test: int = 64, num_classes: int = 4,
                     image_size: int = 8, channels: int = 1, seed: int = 0) -> ImageData:
    """A tiny learnable set: per class a random prototype (pattern + class brightness), images = prototype + noise.

    Labels are balanced within every split (``i % num_classes``, shuffled). Deterministic under ``seed``.
    """
    n_train = _check_count("n_train", n_train, low=1)
    n_val, n_test = _check_count("n_val", n_val), _check_count("n_test", n_test)
    num_classes = _check_count("num_classes", num_classes, low=2)
    image_size, channels = _check_count("image_size", image_size, low=1), _check_count("channels", channels, low=1)
    rng = np.random.default_rng(_check_count("seed", seed))
    shape = (channels, image_size, image_size)
    levels = np.stack([rng.permutation(np.linspace(0.0, 255.0, num_classes)) for _ in range(channels)], 1)
    prototypes = 0.6 * rng.uniform(0.0, 255.0, (num_classes, *shape)) + 0.4 * levels[:, :, None, None]
    splits = []
    for n in (n_train, n_val, n_test):
        y = rng.permutation(np.arange(n) % num_classes)
        x = np.clip(np.rint(prototypes[y] + rng.normal(0.0, 0.15 * 255.0, (n, *shape))), 0, 255).astype(np.uint8)
        splits.append(ImageSplit(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))))
    mean, std = _stats(splits[0].x)
    provenance = {"source": "synthetic: class prototypes + Gaussian noise (std 0.15 * 255)", "seed": seed,
                  "sizes": {"train": n_train, "val": n_val, "test": n_test}, "split_rule": "independent draws"}
    return ImageData("synthetic", *splits, num_classes=num_classes, channels=channels, image_size=image_size,
                     mean=mean, std=std, provenance=provenance)


# --------------------------------------------------------------------------- data specs

_SPEC_KWARGS = {"digits": {"n_val", "n_test", "train_limit", "noise", "pad_to"},
                "synthetic": {"n_train", "n_val", "n_test", "num_classes", "image_size", "channels"}}
_SPEC_HELP = ("'digits', 'synthetic', 'cifar100:PATH', 'cifar10:PATH' or a folder holding "
              "cifar-100-python or cifar-10-batches-py")


def load_data(spec: str | Path, *, seed: int = 0, **kwargs: Any) -> ImageData:
    """Load a data set by name: ``"digits"``, ``"synthetic"``, ``"cifar100:PATH"``, ``"cifar10:PATH"`` or a folder.

    A folder is searched for ``cifar-100-python`` / ``cifar-10-batches-py`` files (itself or those
    subfolders); it must hold exactly one of the two. ``kwargs`` go to :func:`load_digits` or
    :func:`synthetic_images`; CIFAR takes none and ignores ``seed`` (its split is fixed by the BLOX rule).
    """
    text = str(spec).strip() if isinstance(spec, str | Path) else None
    if not text:
        raise InvalidArgumentError(f"data spec must be a non-empty str or path, got {spec!r}; allowed: {_SPEC_HELP}")
    if isinstance(spec, str) and text.lower() in _SPEC_KWARGS:
        text = text.lower()
        unknown = sorted(set(kwargs) - _SPEC_KWARGS[text])
        if unknown:
            raise InvalidArgumentError(f"unknown argument(s) {', '.join(unknown)} for {text!r}; "
                                       f"allowed: {', '.join(sorted(_SPEC_KWARGS[text]))}")
        loader = load_digits if text == "digits" else synthetic_images
        return loader(seed=seed, **kwargs)
    if kwargs:
        extra = ", ".join(sorted(kwargs))
        raise InvalidArgumentError(f"only 'digits' and 'synthetic' take extra arguments; got {extra} with {text!r}")
    for prefix, variant in (("cifar100:", 100), ("cifar10:", 10)):
        if isinstance(spec, str) and text.lower().startswith(prefix):
            if not text[len(prefix):].strip():
                raise InvalidArgumentError(f"{text!r} names no folder; write {prefix}PATH")
            return load_cifar(text[len(prefix):].strip(), variant=variant)
    looks_like_path = isinstance(spec, Path) or any(ch in text for ch in "/\\~.") or Path(text).exists()
    if not looks_like_path:
        raise InvalidArgumentError(f"unknown data spec {text!r}; allowed: {_SPEC_HELP}")
    root = Path(text).expanduser()
    if not root.is_dir():
        raise StoreNotFoundError(f"data folder {root} does not exist (spec {text!r}; allowed: {_SPEC_HELP})")
    found = [v for v in (100, 10) if find_cifar_folder(root, variant=v) is not None]
    if len(found) > 1:
        raise InvalidArgumentError(f"{root} holds both CIFAR-100 and CIFAR-10; write cifar100:{text} or cifar10:{text}")
    if not found:
        raise StoreNotFoundError(f"no CIFAR data in {root}: looked for train, test (CIFAR-100) and data_batch_1..5, "
                                 f"test_batch (CIFAR-10) in {root}, {root / 'cifar-100-python'} and "
                                 f"{root / 'cifar-10-batches-py'}")
    return load_cifar(root, variant=found[0])
