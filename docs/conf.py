"""Sphinx configuration of the blox-env documentation site.

Build (from the repository root, with the ``[docs]`` extra installed)::

    sphinx-build -W --keep-going -j 1 -b html docs docs/_build/html

No network at build time: there is no intersphinx. References to other projects' objects (numpy, torch,
zarr, gymnasium...) are written as literals in the prose; in signatures generated from annotations they
are listed below in ``nitpick_ignore_regex`` (external names only: a broken reference to a blox-env
object fails the build, because ``nitpicky`` is on and CI builds with ``-W``).
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

import types  # noqa: E402

import blox_env  # noqa: E402 - after the path set-up

# ``python -m blox_env.cli`` runs the command when imported: autosummary must not import it (it would parse
# sphinx-build's own argv). A stand-in marked as a mock is skipped by autosummary's module walk.
_main = types.ModuleType("blox_env.cli.__main__")
_main.__sphinx_mock__ = True  # type: ignore[attr-defined]
sys.modules.setdefault("blox_env.cli.__main__", _main)

project = "blox-env"
author = "blox-env contributors"
copyright = "blox-env contributors"  # noqa: A001 - Sphinx's name
release = version = blox_env.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "blox_reexports",
    "blox_contracts",
    "blox_cli",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**/README.md"]
templates_path = ["_templates"]

# MyST: ``{py:func}`` roles and ``{include}``/``{toctree}`` directives in Markdown; heading anchors for links.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# API reference: one page per module, generated from the docstrings (reST with Sphinx roles; napoleon is off).
autosummary_generate = True
autosummary_imported_members = False
autosummary_ignore_module_all = False  # a module documents its __all__; a package lists it (defined elsewhere)
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_class_signature = "mixed"
# Not autodoc_preserve_defaults: it sets ``__signature__`` on the documented functions, and Typer reads the
# signatures of the CLI commands (their option help would vanish from the CLI reference).

# Every reference must resolve...
nitpicky = True
# ...except names of other projects (no intersphinx, no network) and typing internals in signatures.
_EXTERNAL = (
    "np", "numpy", "npt", "torch", "nn", "zarr", "gym", "gymnasium", "spaces", "dgl", "optuna", "ConfigSpace",
    "syne_tune", "ray", "stable_baselines3", "sb3", "pd", "pandas", "matplotlib", "plt", "rich", "typer", "click",
    "fsspec", "numcodecs", "scipy", "sklearn", "moocore", "mo_gymnasium", "networkx", "collections", "typing",
    "typing_extensions", "os", "pathlib", "concurrent", "multiprocessing", "threading", "io", "json", "dataclasses",
    "enum", "types", "datetime", "logging", "argparse", "abc", "contextlib", "queue", "subprocess", "tempfile",
    "zipfile", "hashlib", "random", "re", "functools", "itertools", "signal", "socket", "urllib", "http", "shutil",
    "asyncio", "builtins", "warnings", "tqdm", "yaml", "psutil", "dehb", "smac", "PIL", "traceback", "weakref",
)
_BUILTINS = (
    "int", "float", "str", "bytes", "bool", "complex", "list", "dict", "tuple", "set", "frozenset", "object",
    "type", "None", "NoneType", "Ellipsis", "slice", "range", "bytearray", "memoryview", "callable",
    "Exception", "BaseException", "ValueError", "KeyError", "TypeError", "IndexError", "RuntimeError",
    "OSError", "FileNotFoundError", "FileExistsError", "ImportError", "ModuleNotFoundError", "IOError",
    "NotImplementedError", "KeyboardInterrupt", "StopIteration", "PermissionError", "TimeoutError",
    "AttributeError", "LookupError", "ArithmeticError", "ZeroDivisionError", "UserWarning", "Warning",
    "RuntimeWarning", "DeprecationWarning", "property", "classmethod", "staticmethod", "iter", "len",
    "Any", "Callable", "Iterable", "Iterator", "Sequence", "Mapping", "MutableMapping", "Generator", "Literal",
    "Optional", "Union", "Protocol", "TypeVar", "ClassVar", "Self", "Path", "PathLike", "Hashable", "Collection",
    "Container", "Sized", "Awaitable", "Coroutine", "AsyncIterator", "TextIO", "BinaryIO", "IO", "Final",
    "NamedTuple", "TypedDict", "Generic", "ParamSpec", "Concatenate", "Never", "NoReturn", "Future", "Executor",
    "ExitStack", "SimpleNamespace", "Event", "Lock", "Thread", "Process", "Pool", "Queue", "Popen",
    "T", "K", "V", "P", "R",
)
#: Other projects' classes named bare in annotations (numpy, torch, Gymnasium, ConfigSpace, Optuna, Syne Tune, Ray).
_EXTERNAL_CLASSES = (
    "ndarray", "Generator", "Tensor", "Module", "Env", "Space", "Wrapper", "Box", "Discrete", "MultiDiscrete",
    "ConfigurationSpace", "Configuration", "Trial", "Study", "BlackboxTabular", "UserBlackboxBackend", "ResultGrid",
    "Tuner",
)
nitpick_ignore_regex = [
    (r"py:.*", r"({})(\..*)?".format("|".join(_EXTERNAL))),
    (r"py:.*", r"({})".format("|".join(_BUILTINS + _EXTERNAL_CLASSES))),
    (r"py:.*", r".*\.(T|K|V|P|R)"),  # type variables of generic helpers
    # Gymnasium's own attributes of an env or wrapper, named in our docstrings
    (r"py:attr", r"(observation_space|action_space|reward_space|env|np_random|np_random_seed|spec|unwrapped|"
                 r"render_mode|metadata|num_envs|single_action_space|single_observation_space)"),
]

# HTML: furo, no remote assets.
html_theme = "furo"
html_title = f"blox-env {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
html_theme_options = {"navigation_with_keys": True}
