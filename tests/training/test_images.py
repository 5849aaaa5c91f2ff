"""Image data (datasets.images, .cifar) and the batch pipeline (.augment, .randaugment): CIFAR, digits, synthetic."""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from blox_env.datasets.augment import (
    BLOX_AUGMENT,
    AugmentConfig,
    augment_batch,
    cutout,
    hflip,
    iterate_batches,
    normalise,
    random_crop,
)
from blox_env.datasets.images import (
    ImageSplit,
    blox_split_indices,
    load_cifar,
    load_data,
    load_digits,
    synthetic_images,
)
from blox_env.datasets.randaugment import RANDAUGMENT_OPS, apply_op, op_magnitude, randaugment
from blox_env.errors import BloxError, ImageDataFormatError, InvalidArgumentError, StoreNotFoundError, UnsafePickleError

torch.set_num_threads(1)

N_TRAIN, N_TEST = 60, 20
SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness"}


# --------------------------------------------------------------------------- fake CIFAR folders


class _Py2StylePickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes what Python 2's cPickle wrote for the official files: str/bytes as BINSTRING, numpy.core globals."""

    def save_bytes(self, obj: bytes) -> None:
        n = len(obj)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + obj)
        self.memoize(obj)

    def save_str(self, obj: str) -> None:
        self.save_bytes(obj.encode("latin1"))

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module = "numpy.core.multiarray" if obj.__module__ == "numpy._core.multiarray" else obj.__module__
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]
    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def _dump(path: Path, obj: Any, *, py2: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if py2:
        buf = io.BytesIO()
        _Py2StylePickler(buf, protocol=2).dump(obj)
        path.write_bytes(buf.getvalue())
    else:
        path.write_bytes(pickle.dumps(obj, protocol=2))


def _images(start: int, n: int) -> np.ndarray:
    """Image i is filled with the value start + i, so every image can be traced through the split."""
    return np.repeat(np.arange(start, start + n, dtype=np.uint8)[:, None], 3072, axis=1)


def _write_cifar100(root: Path, *, py2: bool = False) -> Path:
    folder = root / "cifar-100-python"
    for name, start, n in (("train", 0, N_TRAIN), ("test", 100, N_TEST)):
        labels = [(start + i) % 100 for i in range(n)]
        _dump(folder / name, {b"filenames": [f"img_{i}.png".encode() for i in range(n)], b"batch_label": b"fake",
                              b"fine_labels": labels, b"coarse_labels": [v // 5 for v in labels],
                              b"data": _images(start, n)}, py2=py2)
    _dump(folder / "meta", {b"fine_label_names": [f"class{i}".encode() for i in range(100)],
                            b"coarse_label_names": [f"super{i}".encode() for i in range(20)]}, py2=py2)
    return folder


def _write_cifar10(root: Path) -> Path:
    folder = root / "cifar-10-batches-py"
    per = N_TRAIN // 5
    for b in range(5):
        start = b * per
        _dump(folder / f"data_batch_{b + 1}", {b"batch_label": b"training batch", b"data": _images(start, per),
                                               b"labels": [(start + i) % 10 for i in range(per)],
                                               b"filenames": [b"x.png"] * per})
    _dump(folder / "test_batch", {b"batch_label": b"testing batch", b"data": _images(100, N_TEST),
                                  b"labels": [i % 10 for i in range(N_TEST)], b"filenames": [b"x.png"] * N_TEST})
    _dump(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072,
                                    b"num_cases_per_batch": per})
    return folder


@pytest.fixture
def cifar100_root(tmp_path: Path) -> Path:
    _write_cifar100(tmp_path)
    return tmp_path


def _check_cifar_split(data: Any, *, num_classes: int) -> None:
    perm = np.random.RandomState(0).permutation(N_TRAIN)
    train_idx, val_idx = perm[: N_TRAIN - N_TRAIN // 10], perm[N_TRAIN - N_TRAIN // 10:]
    for split, idx in ((data.train, train_idx), (data.val, val_idx), (data.test, np.arange(100, 100 + N_TEST))):
        assert split.x.dtype == torch.uint8 and split.y.dtype == torch.int64
        assert split.x.shape == (len(idx), 3, 32, 32) and split.y.shape == (len(idx),)
        assert torch.equal(split.x[:, 0, 0, 0], torch.as_tensor(idx, dtype=torch.uint8))  # image i holds value i
        assert torch.equal(split.x.amin(dim=(1, 2, 3)), split.x.amax(dim=(1, 2, 3)))
        assert torch.equal(split.y, torch.as_tensor(idx % num_classes, dtype=torch.int64))


# --------------------------------------------------------------------------- CIFAR


def test_blox_split_indices_match_the_original_rule() -> None:
    train, val = blox_split_indices(50_000)
    perm = np.random.RandomState(0).permutation(50_000)
    assert len(train) == 45_000 and len(val) == 5_000
    assert np.array_equal(train, perm[:45_000]) and np.array_equal(val, perm[45_000:])
    small_train, small_val = blox_split_indices(N_TRAIN)
    assert np.array_equal(np.concatenate([small_train, small_val]), np.random.RandomState(0).permutation(N_TRAIN))
    assert len(small_val) == N_TRAIN // 10
    with pytest.raises(InvalidArgumentError):
        blox_split_indices(-1)


@pytest.mark.parametrize("py2", [False, True], ids=["py3-protocol2", "py2-cpickle-style"])
def test_load_cifar100_fake_folder(tmp_path: Path, py2: bool) -> None:
    folder = _write_cifar100(tmp_path, py2=py2)
    data = load_cifar(tmp_path, variant=100)
    assert (data.name, data.num_classes, data.channels, data.image_size) == ("cifar100", 100, 3, 32)
    assert data.mean == (0.5071, 0.4867, 0.4408) and data.std == (0.2675, 0.2565, 0.2761)
    _check_cifar_split(data, num_classes=100)
    assert data.provenance["sizes"] == {"train": 54, "val": 6, "test": N_TEST}
    assert data.provenance["label_names"][:2] == ["class0", "class1"]
    direct = load_cifar(folder, variant=100)  # the dataset folder itself works too
    assert torch.equal(direct.train.x, data.train.x) and torch.equal(direct.val.y, data.val.y)


def test_load_cifar10_fake_folder_and_specs(tmp_path: Path) -> None:
    folder = _write_cifar10(tmp_path)
    for data in (load_cifar(tmp_path, variant=10), load_data(f"cifar10:{folder}"), load_data(str(tmp_path)),
                 load_data(tmp_path)):
        assert (data.name, data.num_classes) == ("cifar10", 10)
        assert data.mean == (0.4914, 0.4822, 0.4465)
        _check_cifar_split(data, num_classes=10)
        assert data.provenance["label_names"] == [f"c{i}" for i in range(10)]


def test_cifar_specs_and_folder_detection(cifar100_root: Path) -> None:
    assert load_data(f"cifar100:{cifar100_root}").name == "cifar100"
    assert load_data(str(cifar100_root / "cifar-100-python")).name == "cifar100"
    with pytest.raises(StoreNotFoundError):  # no CIFAR-10 files there
        load_data(f"cifar10:{cifar100_root}")
    _write_cifar10(cifar100_root)
    with pytest.raises(InvalidArgumentError, match="both"):
        load_data(str(cifar100_root))
    with pytest.raises(InvalidArgumentError, match="extra arguments"):
        load_data(f"cifar100:{cifar100_root}", n_val=3)


def test_missing_cifar_folder_or_files(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="cifar-100-python") as err:
        load_cifar(tmp_path / "nowhere")
    assert isinstance(err.value, FileNotFoundError) and str(tmp_path / "nowhere") in str(err.value)
    _dump(tmp_path / "cifar-100-python" / "train", {b"data": _images(0, 2), b"fine_labels": [0, 1]})
    with pytest.raises(StoreNotFoundError, match="test"):  # test file missing
        load_cifar(tmp_path)
    with pytest.raises(StoreNotFoundError):
        load_data(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreNotFoundError, match="cifar-10-batches-py"):
        load_data(tmp_path / "empty")


@pytest.mark.parametrize("variant", [5, 0, True, "100", None])
def test_bad_cifar_variant(cifar100_root: Path, variant: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="100 or 10"):
        load_cifar(cifar100_root, variant=variant)


@pytest.mark.parametrize("content", [
    {b"data": np.zeros((4, 100), np.uint8), b"fine_labels": [0, 1, 2, 3]},  # wrong row length
    {b"data": np.zeros((4, 3072), np.float32), b"fine_labels": [0, 1, 2, 3]},  # wrong dtype
    {b"data": np.zeros((4, 3072), np.uint8), b"fine_labels": [0, 1, 2]},  # label count
    {b"data": np.zeros((4, 3072), np.uint8), b"fine_labels": [0, 1, 2, 100]},  # label range
    {b"data": np.zeros((4, 3072), np.uint8)},  # no labels
    [1, 2, 3],  # not a dict
])
def test_malformed_cifar_content(cifar100_root: Path, content: Any) -> None:
    _dump(cifar100_root / "cifar-100-python" / "train", content)
    with pytest.raises(ImageDataFormatError, match="train"):
        load_cifar(cifar100_root)


def test_truncated_cifar_pickle(cifar100_root: Path) -> None:
    path = cifar100_root / "cifar-100-python" / "test"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ImageDataFormatError, match="not a readable"):
        load_cifar(cifar100_root)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("kind", ["os.mkdir", "object-array", "eval"])
def test_restricted_unpickler_refuses_malicious_pickles(cifar100_root: Path, kind: str) -> None:
    marker = cifar100_root / "pwned"
    if kind == "os.mkdir":
        raw = pickle.dumps({b"data": _Evil(marker), b"fine_labels": [0]}, protocol=2)
    elif kind == "object-array":
        raw = pickle.dumps({b"data": np.array([_Evil(marker)], dtype=object), b"fine_labels": [0]}, protocol=2)
    else:  # hand-written: builtins.eval("__import__('os').mkdir(...)")
        code = f"__import__('os').mkdir({str(marker)!r})".encode()
        raw = b"\x80\x02cbuiltins\neval\nX" + struct.pack("<I", len(code)) + code + b"\x85R."
    (cifar100_root / "cifar-100-python" / "train").write_bytes(raw)
    with pytest.raises(UnsafePickleError, match="refusing") as err:
        load_cifar(cifar100_root)
    assert isinstance(err.value, ImageDataFormatError) and isinstance(err.value, BloxError)
    assert not marker.exists()


# --------------------------------------------------------------------------- digits and synthetic


def test_digits_shapes_sizes_and_stratification() -> None:
    data = load_digits(seed=0)
    assert (data.name, data.num_classes, data.channels, data.image_size) == ("digits", 10, 1, 8)
    assert [len(s.y) for s in (data.train, data.val, data.test)] == [1200, 297, 300]
    for split in (data.train, data.val, data.test):
        assert split.x.dtype == torch.uint8 and split.x.shape[1:] == (1, 8, 8) and split.y.dtype == torch.int64
    all_y = torch.cat([data.train.y, data.val.y, data.test.y])
    totals = torch.bincount(all_y, minlength=10).double()
    for split in (data.val, data.test):
        expected = totals * len(split.y) / len(all_y)
        assert (torch.bincount(split.y, minlength=10) - expected).abs().max() < 1.0
    assert int(data.train.x.max()) == 255 and int(data.train.x.min()) == 0
    x = data.train.x.double() / 255
    assert data.mean == pytest.approx((float(x.mean()),)) and data.std == pytest.approx((float(x.std(unbiased=False)),))


def test_digits_determinism_limit_noise_and_padding() -> None:
    a, b, c = load_digits(seed=3), load_digits(seed=3), load_digits(seed=4)
    assert all(torch.equal(getattr(a, s).x, getattr(b, s).x) and torch.equal(getattr(a, s).y, getattr(b, s).y)
               for s in ("train", "val", "test"))
    assert not torch.equal(a.test.x, c.test.x)
    small = load_digits(seed=3, train_limit=100)
    assert len(small.train.y) == 100 and torch.bincount(small.train.y, minlength=10).min() >= 9
    assert torch.equal(small.test.x, a.test.x)  # the cap does not move val/test
    noisy = load_digits(seed=3, noise=0.1)
    assert torch.equal(noisy.train.y, a.train.y) and not torch.equal(noisy.train.x, a.train.x)
    assert (noisy.train.x.int() - a.train.x.int()).abs().float().mean() > 5
    padded = load_digits(seed=3, pad_to=12)
    assert padded.image_size == 12 and padded.train.x.shape[1:] == (1, 12, 12)
    assert torch.equal(padded.train.x[:, :, 2:10, 2:10], a.train.x) and int(padded.train.x[:, :, :2].sum()) == 0


@pytest.mark.parametrize("kwargs", [{"n_val": -1}, {"n_test": -5}, {"train_limit": 0}, {"noise": -0.1},
                                    {"pad_to": 7}, {"seed": -1}, {"n_val": 1000, "n_test": 797},
                                    {"noise": float("nan")}])
def test_digits_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        load_digits(**kwargs)


def test_synthetic_images_are_seeded_balanced_and_learnable() -> None:
    data = synthetic_images(n_train=40, n_val=8, n_test=12, num_classes=4, image_size=6, channels=3, seed=1)
    assert (data.name, data.num_classes, data.channels, data.image_size) == ("synthetic", 4, 3, 6)
    assert data.train.x.shape == (40, 3, 6, 6) and data.train.x.dtype == torch.uint8
    assert data.test.y.shape == (12,) and data.test.y.dtype == torch.int64
    assert torch.bincount(data.train.y).tolist() == [10] * 4 and len(data.mean) == 3
    again = synthetic_images(n_train=40, n_val=8, n_test=12, num_classes=4, image_size=6, channels=3, seed=1)
    assert torch.equal(again.train.x, data.train.x)
    # nearest class centroid on raw pixels separates the test set
    cents = torch.stack([data.train.x[data.train.y == k].double().mean(0) for k in range(4)]).flatten(1)
    pred = torch.cdist(data.test.x.double().flatten(1), cents).argmin(1)
    assert (pred == data.test.y).float().mean() >= 0.9
    for bad in ({"n_train": 0}, {"n_val": -1}, {"num_classes": 1}, {"image_size": 0}, {"channels": -2}):
        with pytest.raises(InvalidArgumentError):
            synthetic_images(**bad)


def test_load_data_names_and_errors() -> None:
    assert load_data("synthetic", seed=2, n_train=8, n_val=0, n_test=0).train.x.shape == (8, 1, 8, 8)
    assert len(load_data("digits", seed=1, n_val=10, n_test=10).val.y) == 10
    with pytest.raises(InvalidArgumentError, match="allowed"):
        load_data("imagenet")
    with pytest.raises(InvalidArgumentError, match="unknown argument"):
        load_data("digits", n_tran=3)
    with pytest.raises(InvalidArgumentError):
        load_data("")
    with pytest.raises(InvalidArgumentError):
        load_data("cifar100:")
    with pytest.raises(InvalidArgumentError):
        load_data("synthetic", n_train=-3)


# --------------------------------------------------------------------------- augmentation


def _batch(seed: int = 0, n: int = 16, c: int = 3, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8)
    x[: n // 2] = x[: n // 2] // 3 + 40  # low contrast half: AutoContrast/Equalize have work to do
    return x


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("op", RANDAUGMENT_OPS)
def test_each_randaugment_op_shape_dtype_and_reproducibility(op: str) -> None:
    x = _batch()
    out = randaugment(x, num_ops=2, magnitude=14, generator=_gen(1), ops=(op,))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(out, randaugment(x, num_ops=2, magnitude=14, generator=_gen(1), ops=(op,)))
    other = randaugment(x, num_ops=2, magnitude=14, generator=_gen(2), ops=(op,))
    if op in SIGNED:  # the random sign differs between seeds
        assert not torch.equal(out, other)
    else:  # unsigned ops have nothing random once chosen
        assert torch.equal(out, other)
    assert torch.equal(out, x) == (op == "Identity")
    assert torch.equal(x, _batch())  # input untouched


def test_op_known_values() -> None:
    x = _batch(n=4)
    shifted = apply_op(x, op="TranslateX", magnitudes=6.7)  # torchvision truncates to 6 px
    assert torch.equal(shifted[..., 6:], x[..., :-6]) and int(shifted[..., :6].sum()) == 0
    down = apply_op(x, op="TranslateY", magnitudes=-3.0)
    assert torch.equal(down[..., :-3, :], x[..., 3:, :]) and int(down[..., -3:, :].sum()) == 0
    assert torch.equal(apply_op(x, op="Rotate", magnitudes=90.0), torch.rot90(x, 1, (-2, -1)))  # counter-clockwise
    assert torch.equal(apply_op(x, op="Posterize", magnitudes=6), x & 0xFC)
    assert torch.equal(apply_op(x, op="Solarize", magnitudes=136.0), torch.where(x >= 136, 255 - x, x))
    assert torch.equal(apply_op(x, op="Brightness", magnitudes=0.0), x)
    auto = apply_op(x, op="AutoContrast", magnitudes=0.0)
    assert (auto.amin(dim=(-2, -1)) == 0).all() and (auto.amax(dim=(-2, -1)) == 255).all()
    eq = apply_op(x, op="Equalize", magnitudes=0.0)
    order = x[0, 0].flatten().argsort(stable=True)
    assert (eq[0, 0].flatten()[order].diff().int() >= 0).all()  # monotone per-channel lookup table
    grey = x[:, :1].expand(-1, 3, -1, -1).contiguous()
    assert torch.equal(apply_op(grey, op="Color", magnitudes=0.5), grey)  # no colour to enhance
    assert op_magnitude("Rotate", magnitude=14, image_size=(32, 32)) == pytest.approx(14.0)
    assert op_magnitude("Posterize", magnitude=14, image_size=(32, 32)) == 6.0
    assert op_magnitude("Solarize", magnitude=14, image_size=(32, 32)) == pytest.approx(136.0)
    assert op_magnitude("TranslateX", magnitude=30, image_size=(32, 32)) == pytest.approx(150 / 331 * 32)
    with pytest.raises(InvalidArgumentError):
        apply_op(x, op="Invert", magnitudes=0.0)
    with pytest.raises(InvalidArgumentError):
        op_magnitude("Rotate", magnitude=31, image_size=(32, 32))


def test_hflip_of_a_known_image() -> None:
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.uint8).view(2, 1, 2, 3)
    expected = torch.tensor([[2, 1, 0], [5, 4, 3]], dtype=torch.uint8)
    assert torch.equal(hflip(x, p=1.0, generator=_gen(0))[0, 0], expected)
    assert torch.equal(hflip(x, p=0.0, generator=_gen(0)), x)
    flips = hflip(_batch(n=64), p=0.5, generator=_gen(0))
    flipped = sum(torch.equal(f, o.flip(-1)) for f, o in zip(flips, _batch(n=64)))
    assert 16 < flipped < 48


def test_random_crop_is_a_zero_filled_shift() -> None:
    ij = torch.arange(32 * 32).view(32, 32)
    x = ((ij % 251) + 1).to(torch.uint8).expand(8, 3, 32, 32).contiguous()  # no zero pixel
    out = random_crop(x, padding=4, generator=_gen(5))
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    offsets = set()
    for b in range(8):
        match = [(i, j) for i in range(9) for j in range(9) if torch.equal(out[b], padded[b, :, i:i + 32, j:j + 32])]
        assert len(match) == 1
        offsets.add(match[0])
    assert len(offsets) > 1
    assert torch.equal(random_crop(x, padding=4, generator=_gen(5)), out)


def test_cutout_zeros_one_clipped_square() -> None:
    x = torch.ones(64, 3, 32, 32)
    out = cutout(x, size=16, generator=_gen(3))
    for img in out:
        hole = img == 0
        assert torch.equal(hole[0], hole[1]) and torch.equal(hole[0], hole[2])
        rows, cols = hole[0].any(1).nonzero().flatten(), hole[0].any(0).nonzero().flatten()
        assert 8 <= len(rows) <= 16 and 8 <= len(cols) <= 16
        assert int(hole[0].sum()) == len(rows) * len(cols)  # a rectangle
        assert rows.diff().eq(1).all() and cols.diff().eq(1).all()
    sides = {int((img[0] == 0).any(1).sum()) for img in out}
    assert 16 in sides and len(sides) > 1  # full holes inside, clipped ones at the borders


def test_normalise_values_and_errors() -> None:
    x = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 2, 2).contiguous()
    out = normalise(x, mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.1))
    assert out.dtype == torch.float32
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([-2.0, -2.0, -3.0]))
    assert torch.allclose(out[1, :, 0, 0], torch.tensor([2.0, 3.0, 7.0]))
    with pytest.raises(InvalidArgumentError):
        normalise(x.float(), mean=(0.5,) * 3, std=(0.2,) * 3)
    with pytest.raises(InvalidArgumentError):
        normalise(x, mean=(0.5,), std=(0.2,) * 3)
    with pytest.raises(InvalidArgumentError):
        normalise(x, mean=(0.5,) * 3, std=(0.2, 0.0, 0.1))


def test_augment_batch_full_blox_config() -> None:
    x = _batch(n=32)
    mean, std = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
    out = augment_batch(x, config=BLOX_AUGMENT, mean=mean, std=std, generator=_gen(7))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.equal(out, augment_batch(x, config=BLOX_AUGMENT, mean=mean, std=std, generator=_gen(7)))
    assert not torch.equal(out, augment_batch(x, config=BLOX_AUGMENT, mean=mean, std=std, generator=_gen(8)))
    assert ((out == 0).all(dim=1).flatten(1).sum(1) >= 64).all()  # every image has its (clipped) hole
    plain = augment_batch(x, config=AugmentConfig(), mean=mean, std=std, generator=_gen(7))
    assert torch.equal(plain, normalise(x, mean=mean, std=std))
    for bad in ({"randaugment_magnitude": 31}, {"randaugment_ops": -1}, {"hflip": 1.5}, {"crop_padding": -1},
                {"cutout": 2.5}):
        with pytest.raises(InvalidArgumentError):
            AugmentConfig(**bad)
    with pytest.raises(InvalidArgumentError):
        augment_batch(x.float(), config=BLOX_AUGMENT, mean=mean, std=std, generator=_gen(0))


# --------------------------------------------------------------------------- batches


def test_iterate_batches_covers_every_example_once() -> None:
    n = 50
    split = ImageSplit(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous(),
                       torch.arange(n))
    kw: dict[str, Any] = {"mean": (0.0,), "std": (1 / 255,)}
    batches = list(iterate_batches(split, batch_size=7, shuffle=True, generator=_gen(0), augment=None, **kw))
    assert [len(y) for _, y in batches] == [7] * 7 + [1]
    labels = torch.cat([y for _, y in batches])
    assert sorted(labels.tolist()) == list(range(n)) and labels.tolist() != list(range(n))
    for xb, yb in batches:  # images stay with their labels; values normalised (here: back to 0..255)
        assert xb.dtype == torch.float32 and yb.dtype == torch.int64
        assert torch.allclose(xb[:, 0, 0, 0], yb.float(), atol=1e-3)
    again = torch.cat([y for _, y in iterate_batches(split, batch_size=7, shuffle=True, generator=_gen(0),
                                                     augment=None, **kw)])
    assert torch.equal(again, labels)
    dropped = list(iterate_batches(split, batch_size=7, shuffle=True, generator=_gen(1), augment=None,
                                   drop_last=True, **kw))
    assert len(dropped) == 7 and len(set(torch.cat([y for _, y in dropped]).tolist())) == 49
    ordered = torch.cat([y for _, y in iterate_batches(split, batch_size=16, shuffle=False, generator=None,
                                                       augment=None, device="cpu", **kw)])
    assert ordered.tolist() == list(range(n))
    aug = list(iterate_batches(split, batch_size=16, shuffle=True, generator=_gen(2),
                               augment=AugmentConfig(hflip=0.5, crop_padding=1), **kw))
    assert sum(len(y) for _, y in aug) == n and aug[0][0].shape == (16, 1, 4, 4)


def test_iterate_batches_bad_arguments() -> None:
    split = ImageSplit(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64))
    kw: dict[str, Any] = {"mean": (0.5,), "std": (0.5,), "augment": None}
    with pytest.raises(InvalidArgumentError, match="Generator"):
        iterate_batches(split, batch_size=2, shuffle=True, generator=None, **kw)
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        iterate_batches(split, batch_size=0, shuffle=False, generator=None, **kw)
    with pytest.raises(InvalidArgumentError, match="mean"):
        iterate_batches(split, batch_size=2, shuffle=False, generator=None, mean=(0.5, 0.5), std=(0.5,), augment=None)
    with pytest.raises(InvalidArgumentError, match="ImageSplit"):
        iterate_batches(ImageSplit(split.x, split.y[:3]), batch_size=2, shuffle=False, generator=None, **kw)
