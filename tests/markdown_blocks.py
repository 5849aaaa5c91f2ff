"""Code blocks of Markdown pages (the docs site's pages), parsed on their own: a regex over the Markdown.

Shared by the tests that keep documentation true (``tests/project/test_docs.py`` for the site,
``tests/project/test_readme.py`` for the README). The conventions:

- every ```python block carries an HTML comment on the line before its fence: ``<!-- runnable -->`` (the light
  core and the bundled Blox-mini), ``<!-- runnable: train -->`` (needs torch), ``<!-- runnable: predictors -->``
  (torch and DGL), ``<!-- runnable: integrations -->`` (ConfigSpace and Optuna) or ``<!-- not-runnable: why -->``;
- each ``blox ...`` command of a ```bash block must name an existing command whose options parse.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

FENCE = re.compile(r"^(`{3,}|~{3,})\s*\{?([\w-]*)\}?.*$")
MARK = re.compile(r"^<!--\s*(runnable|not-runnable)(?::\s*(.*?))?\s*-->\s*$")
#: what each ``runnable: KIND`` needs importable
NEEDS = {"": (), "train": ("torch",), "predictors": ("torch", "dgl"), "integrations": ("ConfigSpace", "optuna")}
SHELLS = ("bash", "sh", "shell", "console")
_SEPARATORS = {"&&", "||", ";", "|"}
_REDIRECTS = {">", ">>", "<", "2>", "&>"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Block:
    """One fenced code block: language, 1-based line of its opening fence, code, marker and section."""

    lang: str
    line: int
    code: str
    mark: tuple[str, str] | None
    section: str


def parse_blocks(text: str) -> list[Block]:
    """Every fenced block of a Markdown text (backtick or tilde fences, MyST directives included), with the
    marker comment on the line before its fence. A directive's name is its ``lang`` (``{toctree}`` ->
    ``toctree``)."""
    lines = text.splitlines()
    blocks, section, i = [], "", 0
    while i < len(lines):
        if lines[i].startswith("#") and not lines[i].startswith("#!"):
            section = lines[i].lstrip("#").strip()
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        start, body, close = i, [], fence.group(1)
        i += 1
        while i < len(lines) and lines[i].strip() != close:
            body.append(lines[i])
            i += 1
        prev = MARK.match(lines[start - 1].strip()) if start else None
        mark = (prev.group(1), prev.group(2) or "") if prev else None
        blocks.append(Block(fence.group(2), start + 1, "\n".join(body) + "\n", mark, section))
        i += 1
    return blocks


def blox_commands(blocks: list[Block]) -> list[tuple[int, list[str]]]:
    """``(line, argv after 'blox')`` of every ``blox`` command in shell blocks (comments, chains, redirections
    and leading ``VAR=value`` assignments stripped, continuation lines joined)."""
    out = []
    for b in blocks:
        if b.lang not in SHELLS:
            continue
        joined: list[tuple[int, str]] = []
        pending, first = "", 0
        for k, raw in enumerate(b.code.splitlines()):
            if not pending:
                first = b.line + 1 + k
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            joined.append((first, pending + raw))
            pending = ""
        for line, text in joined:
            lex = shlex.shlex(text, posix=True, punctuation_chars=";&|<>")
            lex.whitespace_split = True
            lex.commenters = "#"
            command: list[str] = []
            commands = []
            skip = False
            for tok in lex:
                if skip:
                    skip = False
                elif tok in _SEPARATORS:
                    commands.append(command)
                    command = []
                elif tok in _REDIRECTS:
                    skip = True
                elif not command and _ASSIGNMENT.match(tok):
                    continue  # PYTHONPATH=. blox ...
                else:
                    command.append(tok)
            commands.append(command)
            out += [(line, c[1:]) for c in commands if c and c[0] == "blox"]
    return out


def resolve_command(app: Any, argv: list[str]) -> tuple[list[str], Any, list[str]]:
    """(command path, click command, the rest of argv) of a ``blox`` argv on the typer ``app``."""
    import typer

    cmd = typer.main.get_command(app)
    path, rest = [], list(argv)
    while hasattr(cmd, "commands") and rest and rest[0] in cmd.commands:
        path.append(rest[0])
        cmd = cmd.commands[rest.pop(0)]
    return path, cmd, rest


def command_problem(app: Any, argv: list[str]) -> str | None:
    """Why ``blox <argv>`` would not run as written (a group, not a command; an unknown option; arguments that do
    not parse), or None when it parses; nothing is run."""
    text = "blox " + " ".join(argv)
    path, cmd, rest = resolve_command(app, argv)
    if hasattr(cmd, "commands"):
        return f"`{text}` names a group, not a command"
    known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    unknown = [tok for tok in rest if tok.startswith("--") and tok.split("=", 1)[0] not in known]
    if unknown:
        return f"`{text}`: no option {unknown[0]} (has {sorted(known)})"
    try:  # the whole line parses (types, counts of arguments) without running the command
        cmd.make_context("blox " + " ".join(path), list(rest))
    except Exception as exc:  # noqa: BLE001 - any parse error is the answer
        return f"`{text}` does not parse: {exc}"
    return None
