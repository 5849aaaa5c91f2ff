"""Image data for training BLOX models: CIFAR-100/10 from a local folder, scikit-learn digits, a synthetic set.

What: every loader returns an :class:`ImageData` whose splits hold *raw* uint8 images ``[N, C, H, W]``
and int64 labels; augmentation and normalisation happen per batch
(:func:`blox_env.datasets.augment.iterate_batches`), so one copy of the data serves training and evaluation.

Why: the BLOX benchmark trained every model on CIFAR-100 with a fixed train/validation split; the
search tooling needs exactly that split, plus small real (digits) and synthetic sets that run on CPU
in seconds. Nothing is ever downloaded.

- **CIFAR** (:func:`load_cifar`): the standard python pickles, read by the restricted unpickler of
  :mod:`blox_env.datasets.cifar` (a hostile file executes nothing). Split rule (the original BLOX one,
  generalised to any size): ``perm = np.random.RandomState(0).permutation(n_train)``; the first
  ``n_train - n_train // 10`` entries of ``perm`` index the training split, the last ``n_train // 10``
  the validation split (45,000 / 5,000 for the official 50,000 images); the official test images are
  the test split.
  Mean/std are the usual published constants.
- **Digits** (:func:`load_digits`): scikit-learn's bundled 1,797 8x8 images, scaled to 0..255 with
  ``round(v * 255 / 16)`` (half to even), split with a seeded stratified rule, optionally noised and
  zero-padded; mean/std from the training split.
- **Synthetic** (:func:`synthetic_images`): class prototypes plus Gaussian noise, for unit tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from blox_env.datasets.cifar import find_cifar_folder, read_cifar
from blox_env.errors import InvalidArgumentError, StoreNotFoundError

__all__ = [
    "CIFAR_STATS",
    "ImageData",
    "ImageSplit",
    "blox_split_indices",
    "load_cifar",
    "load_data",
    "load_digits",
    "synthetic_images",
]


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
"""Published per-channel mean and std of CIFAR-100 and CIFAR-10."""


def blox_split_indices(n_train: int) -> tuple[np.ndarray, np.ndarray]:
    """The BLOX train/val split of ``n_train`` training images: ``RandomState(0).permutation``, last tenth = val."""
    if isinstance(n_train, bool) or not isinstance(n_train, int | np.integer) or n_train < 0:
        raise InvalidArgumentError(f"n_train must be an int >= 0, got {n_train!r}")
    perm = np.random.RandomState(0).permutation(int(n_train))
    n_val = int(n_train) // 10
    return perm[: n_train - n_val], perm[n_train - n_val:]


def load_cifar(root: str | Path, *, variant: int = 100) -> ImageData:
    """CIFAR-100 (``variant=100``) or CIFAR-10 from a local folder in the standard python format.

    ``root`` is the dataset folder itself or its parent (see :func:`~blox_env.datasets.cifar.read_cifar`).
    Splits follow :func:`blox_split_indices`.
    """
    files = read_cifar(root, variant=variant)
    train_idx, val_idx = blox_split_indices(len(files.x_train))

    def split(x: np.ndarray, y: np.ndarray) -> ImageSplit:
        return ImageSplit(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)))

    x_all, y_all = files.x_train, files.y_train
    data = (split(x_all[train_idx], y_all[train_idx]), split(x_all[val_idx], y_all[val_idx]),
            split(files.x_test, files.y_test))
    mean, std = CIFAR_STATS[files.variant]
    provenance = {
        "source": str(files.folder), "format": "CIFAR python pickles", "variant": files.variant,
        "split_rule": "np.random.RandomState(0).permutation(n_train): first n_train - n_train // 10 = train, "
                      "last n_train // 10 = val; official test set = test",
        "sizes": {"train": len(train_idx), "val": len(val_idx), "test": len(files.x_test)}, "seed": 0,
        "mean_std": "published CIFAR constants", "label_names": files.label_names,
    }
    return ImageData(f"cifar{files.variant}", *data, num_classes=files.variant, channels=3, image_size=32,
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
