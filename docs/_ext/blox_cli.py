"""``{blox-cli}``: the reference of the ``blox`` command, generated from the commands themselves.

Typer builds the command tree (its own click); this directive walks it and emits, for the root, every group and
every command, a section with the command's ``--help`` text exactly as ``blox ... --help`` prints it (plain text,
100 columns), so the page is what a user sees and cannot drift from the code. (sphinx-click expects the ``click``
package's classes, which Typer no longer uses.)
"""

from __future__ import annotations

import os
import re
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.typing import ExtensionMetadata

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _tree() -> Any:
    import typer

    from blox_env.cli.root import app

    return app, typer.main.get_command(app)


def walk(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """``(path, command)`` of the root and every group and command under it, in ``--help`` order."""
    out = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        if not getattr(sub, "hidden", False):
            out += walk(sub, (*path, name))
    return out


def help_text(app: Any, path: tuple[str, ...]) -> str:
    """``blox PATH --help`` as printed on a 100-column terminal without colours."""
    from typer.testing import CliRunner

    env = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb", "_TYPER_FORCE_DISABLE_TERMINAL": "1"}
    result = CliRunner().invoke(app, [*path, "--help"], env=env, prog_name="blox", color=False)
    if result.exit_code != 0:
        raise RuntimeError(f"blox {' '.join(path)} --help failed ({result.exit_code}):\n{result.output}")
    return "\n".join(line.rstrip() for line in _ANSI.sub("", result.output).strip("\n").splitlines())


class CliDirective(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        app, root = _tree()
        out: list[nodes.Node] = []
        for path, command in walk(root):
            title = " ".join(("blox", *path))
            section = nodes.section(ids=[nodes.make_id("cli-" + "-".join(("blox", *path)))])
            section += nodes.title(text=title)
            summary = (getattr(command, "short_help", None) or (command.help or "").strip().split("\n")[0]).strip()
            if summary:
                section += nodes.paragraph(text=summary)
            text = help_text(app, path)
            block = nodes.literal_block(text, text)
            block["language"] = "text"
            section += block
            out.append(section)
        return out


def setup(app: Sphinx) -> ExtensionMetadata:
    os.environ.setdefault("COLUMNS", "100")
    app.add_directive("blox-cli", CliDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
