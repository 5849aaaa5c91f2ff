"""Cross-references in blox-env's docstrings: re-exported names, names relative to their module, private helpers.

blox-env documents each object once, in the module that defines it (``blox_env.datasets.store.core.BloxStore``),
while docstrings and guides name it by its one public import path (``blox_env.BloxStore``,
``blox_env.agents.RandomSearch``) or by a short name relative to the module the docstring is in. When Sphinx does
not find a Python reference, :func:`_missing_reference`

1. imports the named object (absolute, or relative to the docstring's class and module) and, where it is
   defined (``__module__`` + ``__qualname__``) is documented, links there;
2. else links to the one documented object whose name ends with the reference (``SearchRun`` ->
   ``blox_env.runs.search.SearchRun``) when there is exactly one;
3. else, when the name imports (a private helper, an attribute inherited from Gymnasium), shows it as code
   without a link: it is real, just not part of the documented API.

A name that none of these finds (a typo, a renamed or removed function) stays unresolved, so with ``nitpicky``
and ``-W`` the build fails on it. The handler of ``autodoc-skip-member`` documents each object only where it is
defined: a module that re-exports a name (in its ``__all__``) lists it, it does not document it a second time.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.typing import ExtensionMetadata

_MISSING = object()


def _import(target: str) -> Any:
    """The object named by the dotted ``target`` (``blox_env...`` only), or ``_MISSING``."""
    if not target.startswith("blox_env"):
        return _MISSING
    parts = target.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        try:
            for attr in parts[k:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return _MISSING
        return obj
    return _MISSING


def _defined_at(obj: Any) -> str | None:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str) and not isinstance(obj, (str, int, float, tuple)):
        return f"{module}.{qualname}"
    return None


def _candidates(node: Any) -> list[str]:
    target = node.get("reftarget", "").lstrip(".~")
    if target.startswith("blox_env."):
        return [target]
    modname, classname = node.get("py:module"), node.get("py:class")
    out = []
    if modname and classname:
        out.append(f"{modname}.{classname}.{target}")
    if modname:
        out.append(f"{modname}.{target}")
        package = modname.rpartition(".")[0]
        if package:  # ``prepare.prepare_run`` in blox_env.build.blockwise: a sibling module's function
            out.append(f"{package}.{target}")
    return out


def _instance_attribute(name: str) -> bool:
    """Whether ``module.Class.attr`` names an attribute the class sets on its instances (``self.attr = ...``)."""
    owner, _, attr = name.rpartition(".")
    cls = _import(owner)
    if not isinstance(cls, type) or not attr.isidentifier():
        return False
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return False
    return re.search(rf"\bself\.{attr}\s*(:[^=]+)?=", source) is not None


def _missing_reference(app: Sphinx, env: Any, node: Any, contnode: nodes.Element) -> nodes.Element | None:
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    objects = domain.objects

    def link(name: str) -> nodes.Element | None:
        new = node.deepcopy()
        new["reftarget"] = name
        new["refspecific"] = False
        return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], name, new, contnode)

    exists = False
    for name in _candidates(node):
        obj = _import(name)
        if obj is _MISSING:
            exists = exists or _instance_attribute(name)
            continue
        exists = True
        where = _defined_at(obj)
        if where is not None and where in objects:
            return link(where)
    short = node.get("reftarget", "").lstrip(".~")
    if short:
        suffix = "." + short
        found = sorted(name for name in objects if name.endswith(suffix) or name == short)
        if short.startswith("blox_env."):  # a re-exported constant: documented under the same last name
            last = "." + short.rsplit(".", 1)[-1]
            obj = _import(short)
            found = found or sorted(n for n in objects if n.endswith(last) and obj is not _MISSING
                                    and _import(n) is obj)
        modname = node.get("py:module") or ""
        here = [n for n in found if modname and n.startswith(modname + ".")]
        if len(found) == 1 or len(here) == 1:  # one match, or one in the docstring's own module
            return link(found[0] if len(found) == 1 else here[0])
    if exists:
        return contnode  # real, not documented (private, inherited from another project): code without a link
    return None


_current_module: list[str] = [""]


_RELATIVE_MOD = re.compile(r":mod:`\.(\w+)`")


def _process_docstring(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Note the module being documented; resolve ``:mod:`.sibling``` as Python imports do; drop docstrings
    inherited from another project (Gymnasium's ``Env.step``...), which are written for its own site."""
    if what == "module":
        _current_module[0] = name
        package = name if hasattr(obj, "__path__") else name.rpartition(".")[0]
    else:
        package = str(getattr(obj, "__module__", "") or "").rpartition(".")[0]
        if what == "method" and _inherited_from_elsewhere(name):
            lines[:] = []
            return
    if package:
        def absolute(match: re.Match[str]) -> str:
            full = f"{package}.{match.group(1)}"
            try:
                found = importlib.util.find_spec(full) is not None
            except ImportError:
                found = False
            return f":mod:`~{full}`" if found else match.group(0)

        lines[:] = [_RELATIVE_MOD.sub(absolute, line) for line in lines]


def _inherited_from_elsewhere(name: str) -> bool:
    """Whether the method ``module.Class.method`` has no docstring of its own in blox-env's classes."""
    owner, _, attr = name.rpartition(".")
    cls = _import(owner)
    if not isinstance(cls, type):
        return False
    for klass in cls.__mro__:
        if attr in klass.__dict__:
            doc = getattr(klass.__dict__[attr], "__doc__", None)
            if doc:
                return not klass.__module__.startswith("blox_env")
    return False


def _skip_reexport(app: Sphinx, what: str, name: str, obj: Any, skip: bool, options: Any) -> bool | None:
    """Skip a module member that is defined in another blox-env module (it is documented there)."""
    if what != "module" or skip:
        return None
    module = getattr(obj, "__module__", None)
    defined_elsewhere = isinstance(module, str) and module.startswith("blox_env") and module != _current_module[0]
    if (isinstance(obj, type) or callable(obj)) and defined_elsewhere:
        return True
    return None


def _process_signature(app: Sphinx, what: str, name: str, obj: Any, options: Any, signature: str | None,
                       return_annotation: str | None) -> tuple[str | None, str | None]:
    """A dataclass field's ``default_factory`` shows as ``<factory>``, which is no Python: Sphinx would then split
    the signature at every comma (``dict[str, ...]`` broken into false references). Show ``...`` instead."""
    if signature and "<factory>" in signature:
        signature = signature.replace("<factory>", "...")
    return signature, return_annotation


def setup(app: Sphinx) -> ExtensionMetadata:
    app.connect("autodoc-process-signature", _process_signature)
    app.connect("missing-reference", _missing_reference)
    app.connect("autodoc-process-docstring", _process_docstring)
    app.connect("autodoc-skip-member", _skip_reexport)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
