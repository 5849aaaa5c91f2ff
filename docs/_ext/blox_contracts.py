"""``{blox-contracts}``: the import-linter contracts of ``pyproject.toml``, rendered where the docs describe the
layering (``docs/architecture.md``), so the page says what CI enforces and cannot drift from it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.typing import ExtensionMetadata

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def contract_lines(pyproject: Path = PYPROJECT) -> list[str]:
    """reST for every contract: its name, then its layers (top first) or its modules."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    lines: list[str] = []
    for c in data["tool"]["importlinter"]["contracts"]:
        lines += [f"**{c['name']}** (``{c['id']}``, {c['type']})", ""]
        if c["type"] == "layers":
            lines += [".. code-block:: text", ""] + [f"    {layer}" for layer in c["layers"]] + [""]
        for key in ("source_modules", "forbidden_modules", "modules", "containers"):
            if c.get(key):
                lines += [f"- {key.replace('_', ' ')}: " + ", ".join(f"``{m}``" for m in c[key])]
        lines.append("")
    return lines


class ContractsDirective(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(str(PYPROJECT))
        container = nodes.container()
        self.state.nested_parse(StringList(contract_lines(), source=str(PYPROJECT)), self.content_offset, container)
        return container.children


def setup(app: Sphinx) -> ExtensionMetadata:
    app.add_directive("blox-contracts", ContractsDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
