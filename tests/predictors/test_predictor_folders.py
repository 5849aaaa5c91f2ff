"""Damaged or edited predictor folders: one clear error naming the folder, nothing allocated.

The fixture is the fastest torch predictor with a weights file (a one-layer MLP, one epoch); each
test copies its folder and damages one thing. Graph predictors share the checks: their implied
tensor shapes are compared with real models, and a huge width is refused before DGL builds anything.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from blox_env.errors import BloxError, InvalidArgumentError, PredictorFolderError
from blox_env.predictors.baselines import ConstantPredictor, MLPPredictor, TreePredictor
from blox_env.predictors.signatures import DonnaPredictor, LanaPredictor

IDX = np.arange(0, 91125, 7001)[:12]
Y = np.linspace(50.0, 80.0, len(IDX))


class Allocated(BaseException):
    """Raised by a patched constructor/loader: the test proves it was never reached."""


@pytest.fixture(scope="module")
def saved_mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pred = MLPPredictor(hidden=8, layers=1, epochs=1, batch_size=8).fit(IDX, Y, seed=0)
    return pred.save(tmp_path_factory.mktemp("mlp") / "mlp")


@pytest.fixture()
def folder(saved_mlp: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved_mlp, tmp_path / "pred"))


def _meta(folder: Path) -> dict:
    return json.loads((folder / "predictor.json").read_text())


def _set_meta(folder: Path, edit: Callable[[dict], object]) -> None:
    meta = _meta(folder)
    edit(meta)
    (folder / "predictor.json").write_text(json.dumps(meta))


def _fails(cls: type, folder: Path, *match: str) -> PredictorFolderError:
    with pytest.raises(PredictorFolderError) as info:
        cls.load(folder)
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, BloxError) and isinstance(err, InvalidArgumentError)
    assert str(folder) in str(err) and cls.__name__ in str(err)
    for m in match:
        assert m in str(err), (m, str(err))
    return err


def _torch_state(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "weights.pt", weights_only=True)


def test_intact_folder_loads(folder: Path) -> None:
    loaded = MLPPredictor.load(folder)
    assert loaded.config.hidden == 8 and loaded.predict(IDX).shape == (len(IDX),)


DAMAGE: dict[str, tuple[Callable[[Path], object], tuple[str, ...]]] = {
    "missing weights": (lambda f: (f / "weights.pt").unlink(), ("weights.pt is missing",)),
    "missing json": (lambda f: (f / "predictor.json").unlink(), ("predictor.json is missing",)),
    "empty json": (lambda f: (f / "predictor.json").write_text(""), ("not valid JSON",)),
    "invalid json": (lambda f: (f / "predictor.json").write_text("{not json"), ("not valid JSON",)),
    "deeply nested json": (lambda f: (f / "predictor.json").write_text("[" * 100_000 + "]" * 100_000),
                           ("not valid JSON",)),
    "json not an object": (lambda f: (f / "predictor.json").write_text("[1, 2]"), ("JSON object", "list")),
    "binary json": (lambda f: (f / "predictor.json").write_bytes(b"\xff\xfe\x00garbage"), ("not valid JSON",)),
    "hidden is a string": (lambda f: _set_meta(f, lambda m: m["config"].update(hidden="8")),
                           ("config.hidden", "'8'")),
    "layers is a float": (lambda f: _set_meta(f, lambda m: m["config"].update(layers=1.5)), ("config.layers",)),
    "config is null": (lambda f: _set_meta(f, lambda m: m.update(config=None)), ("config must be a JSON object",)),
    "scaler is a list": (lambda f: _set_meta(f, lambda m: m.update(scaler=[0, 1])), ("scaler",)),
    "scaler std zero": (lambda f: _set_meta(f, lambda m: m["scaler"].update(std=0)), ("scaler.std",)),
    "dropout out of range": (lambda f: _set_meta(f, lambda m: m["config"].update(dropout=3.0)), ("dropout",)),
    "huge hidden size": (lambda f: _set_meta(f, lambda m: m["config"].update(hidden=10**9)),
                         ("hidden = 1000000000 is too large", "allowed 1..16384")),
    "hidden beyond the weights": (lambda f: _set_meta(f, lambda m: m["config"].update(hidden=4096)),
                                  ("truncated or the config was edited",)),
    "truncated weights": (lambda f: (f / "weights.pt").write_bytes((f / "weights.pt").read_bytes()[:2000]),
                          ("weights.pt",)),
    "garbage weights": (lambda f: (f / "weights.pt").write_bytes(
        np.random.default_rng(0).bytes((f / "weights.pt").stat().st_size)), ("not a torch weights file",)),
    "wrong tensor shape": (lambda f: torch.save({k: v.T.contiguous() if k == "0.weight" else v
                                                 for k, v in _torch_state(f).items()}, f / "weights.pt"),
                           ("'0.weight'", "(135, 8)", "(8, 135)")),
    "nan weights": (lambda f: torch.save({k: v * float("nan") for k, v in _torch_state(f).items()},
                                         f / "weights.pt"), ("NaN or infinite",)),
    "missing tensor": (lambda f: torch.save({k: v for k, v in _torch_state(f).items() if k != "3.bias"},
                                            f / "weights.pt"), ("missing tensors ['3.bias']",)),
    "pickled object in weights": (lambda f: torch.save({**_torch_state(f), "x": io.BytesIO(b"x" * 5000)},
                                                       f / "weights.pt"), ("cannot be read",)),
    "unknown predictor kind": (lambda f: _set_meta(f, lambda m: m.update(predictor="FancyPredictor")),
                               ("'FancyPredictor'", "unknown kind", "GCNPredictor")),
    "other predictor kind": (lambda f: _set_meta(f, lambda m: m.update(predictor="GCNPredictor")),
                             ("holds a 'GCNPredictor', not a MLPPredictor",)),
    "format version": (lambda f: _set_meta(f, lambda m: m.update(format_version=99)), ("format 99",)),
    "unknown top-level key": (lambda f: _set_meta(f, lambda m: m.update(extra=1)), ("unknown keys ['extra']",)),
    "unknown config key": (lambda f: _set_meta(f, lambda m: m["config"].update(hiden=8)), ("unknown keys ['hiden']",)),
    "missing config key": (lambda f: _set_meta(f, lambda m: m["config"].pop("hidden")), ("missing keys ['hidden']",)),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_folder_raises_one_clear_error(folder: Path, damage: str) -> None:
    apply, match = DAMAGE[damage]
    apply(folder)
    _fails(MLPPredictor, folder, *match)


@pytest.mark.parametrize("hidden", [10**9, 4096])
def test_huge_hidden_size_fails_before_anything_is_built_or_read(folder: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 hidden: int) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise Allocated

    monkeypatch.setattr(MLPPredictor, "_build", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch.nn.Linear, "__init__", refuse)
    _set_meta(folder, lambda m: m["config"].update(hidden=hidden))
    _fails(MLPPredictor, folder, "hidden" if hidden > 16384 else "weights.pt")


def test_missing_folder_names_it(tmp_path: Path) -> None:
    _fails(MLPPredictor, tmp_path / "nowhere", "does not exist")


# graph predictors: implied shapes match the real models; huge widths never reach DGL ----------------
@pytest.mark.parametrize("name", ["GCNPredictor", "GINPredictor", "BRPPredictor", "MLPPredictor"])
def test_implied_shapes_match_the_real_model(name: str) -> None:
    import blox_env.predictors as preds
    from blox_env.predictors.brp import RelationModel

    cls = getattr(preds, name)
    for layers, hidden in ((1, 4), (3, 6)):
        pred = cls(layers=layers, hidden=hidden, epochs=1)
        if name == "BRPPredictor":
            real, implied = RelationModel(pred.config), RelationModel.state_shapes(pred.config)
        else:
            real, implied = pred._build(), pred._state_shapes()
        assert {k: tuple(v.shape) for k, v in real.state_dict().items()} == implied


@pytest.mark.parametrize("name", ["GCNPredictor", "GINPredictor", "BRPPredictor"])
def test_graph_predictor_folder_with_huge_width_is_refused_before_building(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import blox_env.predictors as preds
    from blox_env.predictors.brp import RelationModel

    cls = getattr(preds, name)
    pred = cls(layers=1, hidden=4, epochs=1)
    pred.model = RelationModel(pred.config) if name == "BRPPredictor" else pred._build()
    pred.fitted_ = True
    folder = pred.save(tmp_path / name)
    assert cls.load(folder).fitted_  # intact: loads
    key = "classifier_hidden" if name == "BRPPredictor" else "hidden"
    for value, match in ((200_000, f"{key} = 200000 is too large"), (512, "truncated or the config was edited")):
        _set_meta(folder, lambda m, v=value: m["config"].update({key: v}))
        with monkeypatch.context() as mp:
            mp.setattr(torch, "load", lambda *a, **k: (_ for _ in ()).throw(Allocated()))
            mp.setattr(RelationModel, "__init__", lambda *a, **k: (_ for _ in ()).throw(Allocated()))
            mp.setattr(cls, "_build", lambda *a, **k: (_ for _ in ()).throw(Allocated()), raising=False)
            _fails(cls, folder, match)


# predictors without torch weights ---------------------------------------------------------------
def _npz_with_header_claiming(path: Path, shape: tuple[int, ...]) -> None:
    """An ``arrays.npz`` whose ``indices`` header claims ``shape`` but holds 8 bytes (written by hand)."""
    header = {"descr": "<i8", "fortran_order": False, "shape": shape}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("indices.npy", np.lib.format.magic(1, 0) + buf.getvalue()[8:] + b"\x00" * 8)
        zf.writestr("targets.npy", _npy(np.ones(1)))


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_tree_folder_damage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = TreePredictor(n_estimators=3, max_depth=2).fit(IDX, Y, seed=0).save(tmp_path / "tree")
    good = (folder / "arrays.npz").read_bytes()
    np.testing.assert_allclose(TreePredictor.load(folder).predict(IDX[:3]), TreePredictor.load(folder).predict(
        IDX[:3]))
    _set_meta(folder, lambda m: m.update(n_estimators=10**9))
    _fails(TreePredictor, folder, "n_estimators", "1..100000")
    _set_meta(folder, lambda m: m.update(n_estimators=3, seed="0"))
    _fails(TreePredictor, folder, "seed")
    _set_meta(folder, lambda m: m.update(seed=0))
    (folder / "arrays.npz").write_bytes(b"PK\x03\x04garbage")
    _fails(TreePredictor, folder, "arrays.npz cannot be read")
    monkeypatch.setattr(np.lib.format, "read_array", lambda *a, **k: (_ for _ in ()).throw(Allocated()))
    _npz_with_header_claiming(folder / "arrays.npz", (10**12,))  # 8 TB if allocated
    _fails(TreePredictor, folder, "claims shape")
    monkeypatch.undo()
    with zipfile.ZipFile(folder / "arrays.npz", "w") as zf:
        zf.writestr("indices.npy", _npy(np.array([0.5, 1.5])))  # floats where model indices belong
        zf.writestr("targets.npy", _npy(np.ones(2)))
    _fails(TreePredictor, folder, "'indices'")
    (folder / "arrays.npz").write_bytes(good)
    assert TreePredictor.load(folder).fitted_


def test_signature_and_constant_folder_damage(tmp_path: Path) -> None:
    sig = np.linspace(0.1, 1.0, 135).reshape(3, 45)
    donna = DonnaPredictor(signatures=sig).fit(IDX, Y).save(tmp_path / "donna")
    lana = LanaPredictor(signatures=sig).save(tmp_path / "lana")
    const = ConstantPredictor().fit(IDX, Y).save(tmp_path / "const")
    _set_meta(donna, lambda m: m.update(signatures=[[0.0] * 45] * 2))
    _fails(DonnaPredictor, donna, "[3][45]")
    _set_meta(donna, lambda m: m.update(signatures=sig.tolist(), coef=[1.0] * 4))
    _fails(DonnaPredictor, donna, "coef must be a list of 9 numbers")
    _set_meta(lana, lambda m: m.update(fitted="yes"))
    _fails(LanaPredictor, lana, "fitted")
    _set_meta(lana, lambda m: m.update(fitted=True, signatures=[["x"] * 45] * 3))
    _fails(LanaPredictor, lana, "signatures")
    _set_meta(const, lambda m: m.update(value=None))
    _fails(ConstantPredictor, const, "value")
