"""Blox-mini: the benchmark that ships inside the package, and the command that builds it.

An exhaustive sub-space of BLOX trained normally on scikit-learn's digits (1,200 / 297 / 300 split, seed 0)
on CPU, with blockwise tables (teachers M1..M5, block libraries, fine-tuning). Two versions, both buildable by
name (:data:`MINI_VERSIONS`, ``blox build-mini --version v1|v2``); each store records its version in the
``mini_version`` attribute. The bundled store is :data:`MINI_BUNDLED`, v2 (v1 until v2's build was complete).

**v2** (:data:`MINI_V2`): K = 9 blocks per stage (729 models), seeds 0, 1 and 2, the ``digits_mini_v2``
recipe (12 epochs, cosine annealed per batch, so a 1-epoch fine-tune ends annealed and costs about 9 % of a
normal training while the full fine-tune, 12 epochs, is as long as normal training, as in the paper). The
blocks cover all three ops as A and as B, residual (``sc``) and non-residual wiring, chains and parallel
branches:

====  ======================  =====================
id    block                   why
====  ======================  =====================
1     mbconv > conv           A = mbconv, chain
8     bconv > bconv           two bottlenecks in a chain (deepest)
9     conv                    single op (B = conv)
10    mbconv                  single op (B = mbconv)
11    bconv                   single op (B = bconv)
23    bconv > conv + sc       A = bconv, residual
24    conv > mbconv + sc      A = conv, residual
27    conv > bconv + sc       residual with B = bconv
33    mbconv || mbconv        parallel branches (inp + sc, no chain)
====  ======================  =====================

**v1** (:data:`MINI_V1`): the six blocks 1, 9, 10, 11, 23, 24 (216 models), seeds 0 and 1, ``digits_mini``
(8 epochs, cosine per epoch), fine-tuning for 1 and 8 epochs; it stays buildable for comparison.

Rebuild (resumable): ``blox build-mini --version v1|v2`` builds into ``build/blox-mini.zarr`` (v1) or
``build/blox-mini-v2.zarr``; the bundled version is packaged to ``blox_env/data/blox-mini.zip``, the other to
``build/blox-mini-<version>.zip``.
BENCHMARKS.md has the build times and the discrimination figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blox_env.build.blockwise import BlockwiseSpec
from blox_env.errors import InvalidArgumentError
from blox_env.space import SubSpace

__all__ = ["MINI_BLOCKS", "MINI_BLOCKWISE", "MINI_BUNDLED", "MINI_DATA", "MINI_RUN", "MINI_SEEDS", "MINI_SPACE",
           "MINI_V1", "MINI_V2", "MINI_VERSIONS", "MiniVersion", "build_mini", "default_paths", "get_mini_version",
           "package_store", "write_mini_latency"]

MINI_RUN = "digits"
MINI_DATA = "digits"


@dataclass(frozen=True)
class MiniVersion:
    """One version of Blox-mini: the blocks of every stage, the seeds, the recipe and the blockwise tables."""

    version: str
    blocks: tuple[int, ...]
    seeds: tuple[int, ...]
    recipe: str
    blockwise: BlockwiseSpec

    @property
    def space(self) -> SubSpace:
        """The exhaustive sub-space: the same blocks in every stage."""
        return SubSpace((self.blocks, self.blocks, self.blocks))


#: v1: 6 blocks, 2 seeds, ``digits_mini``; distilled as the original trainer does (the recipe's SGD, cosine
#: schedule, batch size and crop augmentation; each block keeps its best-validation-loss epoch) for 10 epochs (the
#: paper's length) and 2 (the short library); fine-tuning for 1 epoch (short, the analogue of the paper's FT10)
#: and 8 (full, as long as normal training, the analogue of FT200).
MINI_V1 = MiniVersion("v1", (1, 9, 10, 11, 23, 24), (0, 1), "digits_mini",
                      BlockwiseSpec(recipe="digits_mini", data=MINI_DATA, data_kwargs=(("seed", 0),),
                                    normal_run=MINI_RUN, seed=0, distill_epochs=(2, 10), ft_epochs=(1, 8)))
#: v2: 9 blocks, 3 seeds; fine-tuning for 1 epoch (short: ~9 % of a normal training's compute, the analogue of
#: the paper's FT10 of 200) and 12 (full, as long as normal training).
MINI_V2 = MiniVersion("v2", (1, 8, 9, 10, 11, 23, 24, 27, 33), (0, 1, 2), "digits_mini_v2",
                      BlockwiseSpec(recipe="digits_mini_v2", data=MINI_DATA, data_kwargs=(("seed", 0),),
                                    normal_run=MINI_RUN, seed=0, distill_epochs=(2, 10), ft_epochs=(1, 12)))
MINI_VERSIONS = {v.version: v for v in (MINI_V1, MINI_V2)}
#: The version that ships as ``blox_env/data/blox-mini.zip``; the ``MINI_*`` constants below are its.
MINI_BUNDLED = MINI_V2
MINI_BLOCKS = MINI_BUNDLED.blocks
MINI_SPACE = MINI_BUNDLED.space
MINI_SEEDS = MINI_BUNDLED.seeds
MINI_BLOCKWISE = MINI_BUNDLED.blockwise


def get_mini_version(version: str | MiniVersion) -> MiniVersion:
    """A Blox-mini version by name (``v1``, ``v2``) or as given."""
    if isinstance(version, MiniVersion):
        return version
    if version not in MINI_VERSIONS:
        raise InvalidArgumentError(f"unknown Blox-mini version {version!r}: allowed {', '.join(MINI_VERSIONS)}")
    return MINI_VERSIONS[version]


def default_paths(version: str | MiniVersion) -> tuple[str, str]:
    """Where ``blox build-mini`` builds and packages ``version`` by default: ``build/blox-mini.zarr`` for v1 (its
    folder before v2 existed) and ``build/blox-mini-<version>.zarr`` for later ones; the bundled version is packaged
    to the package's ``blox_env/data/blox-mini.zip``, another to ``build/blox-mini-<version>.zip``."""
    mini = get_mini_version(version)
    folder = "build/blox-mini.zarr" if mini.version == "v1" else f"build/blox-mini-{mini.version}.zarr"
    zip_path = ("blox_env/data/blox-mini.zip" if mini.version == MINI_BUNDLED.version
                else f"build/blox-mini-{mini.version}.zip")
    return folder, zip_path


def build_mini(out: str | Path | None = None, *, package_zip: str | Path | None = None, executor: str = "process",
               jobs: int = 2, progress: bool = True, version: str | MiniVersion = MINI_BUNDLED.version) -> Any:
    """Train (or finish training) Blox-mini ``version`` into ``out`` (default: :func:`default_paths`); then zip it
    to ``package_zip`` if given."""
    from blox_env.build.benchmark import build_benchmark
    from blox_env.datasets.store.core import BloxStore

    mini = get_mini_version(version)
    out = default_paths(mini)[0] if out is None else out
    if Path(out).exists():  # a build folder of another version is never finished with this one's recipe
        have = BloxStore.open(out).attrs.get("mini_version", "v1")
        if have != mini.version:
            raise InvalidArgumentError(f"{out} holds Blox-mini {have}, not {mini.version}: build into another folder")
    report = build_benchmark(out, archs=mini.space, run=MINI_RUN, recipe=mini.recipe, data=MINI_DATA,
                             data_kwargs={"seed": 0}, seeds=mini.seeds, executor=executor, jobs=jobs,
                             name="blox-mini", progress=progress)
    st = BloxStore.open(out, mode="a")
    if st.attrs.get("mini_version") != mini.version:
        st.set_attrs(mini_version=mini.version)
    st.close()
    if package_zip is not None:
        package_store(out, package_zip)
    return report


def write_mini_latency(out: str | Path, *, repeats: int = 30) -> None:
    """Measure the component latency table at Blox-mini's width (8x8 digits, stem 4) into ``latency/<cpu>``."""
    from blox_env.datasets.store.core import BloxStore
    from blox_env.latency import LatencyConfig, component_latencies, device_name, latency_table
    from blox_env.shapes import ModelConfig

    store = BloxStore.open(out, mode="a")
    config = ModelConfig(**store.attrs["model_config"])
    comps = component_latencies(LatencyConfig(repeats=repeats, model=config))
    store.write_latency(device_name(), latency_table(comps)[store.index],
                        attrs={"batch": 1, "threads": 1, "repeats": repeats, "model_config": vars(config),
                               "method": "per-component lookup at Blox-mini width, summed"})
    store.close()  # records the new array's checksum


def package_store(src: str | Path, dest: str | Path, *, weights: bool = False) -> Path:
    """Zip a store folder to ``dest`` (atomically); without ``weights`` the block libraries' and teachers'
    weights are left out (the tables, signatures and fine-tuning results stay), which keeps the bundled
    Blox-mini at a few MB (weights: ~8 MB more; they stay in the build folder)."""
    import shutil
    import tempfile

    from blox_env.datasets.store.location import zip_directory

    src, target = Path(src), Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".zip.tmp")
    with tempfile.TemporaryDirectory() as work:
        folder = src
        if not weights and (src / "blockwise").is_dir():
            folder = Path(work) / src.name
            shutil.copytree(src, folder)
            for teacher in (folder / "blockwise").iterdir():
                if teacher.is_dir():
                    shutil.rmtree(teacher / "library", ignore_errors=True)
                    shutil.rmtree(teacher / "teacher", ignore_errors=True)
        zip_directory(folder, tmp)
    tmp.replace(target)
    return target
