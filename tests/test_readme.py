"""README.md is true: its Python blocks run, its ``blox`` command lines parse, its repo paths exist.

The README is parsed here on its own (a regex over the Markdown), not through any project code:

- every ```python block carries an HTML comment on the line before its fence: ``<!-- runnable -->``
  (the light core and the bundled Blox-mini), ``<!-- runnable: train -->`` (needs torch),
  ``<!-- runnable: predictors -->`` (needs torch and DGL), ``<!-- runnable: integrations -->`` (ConfigSpace
  and Optuna) or ``<!-- not-runnable: why -->``;
- each runnable block runs in a fresh namespace (no block relies on another, so a reader can paste
  any one of them alone), in a temporary working directory with ``BLOX_HOME`` pointing into it, so
  nothing touches the user's cache; a failure names the block's line in README.md;
- each ``blox ...`` command of a ```bash block must name an existing command, and its options and
  arguments must parse (``blox ... --help`` is run too);
- every backticked path into the repository (``examples/x.py``, ``blox_env/build/mini.py``...) exists and
  every backticked ``blox_env.`` dotted name resolves.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from blox_env.cli.root import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
MARK = re.compile(r"^<!--\s*(runnable|not-runnable)(?::\s*(.*?))?\s*-->\s*$")
#: what each ``runnable: KIND`` needs importable
NEEDS = {"": (), "train": ("torch",), "predictors": ("torch", "dgl"), "integrations": ("ConfigSpace", "optuna")}


@dataclass(frozen=True)
class Block:
    """One fenced code block: language, 1-based line of its opening fence, code, marker and section."""

    lang: str
    line: int
    code: str
    mark: tuple[str, str] | None
    section: str


def parse_blocks(text: str) -> list[Block]:
    """Every fenced block of a Markdown text, with the marker comment on the line before its fence."""
    lines = text.splitlines()
    blocks, section, i = [], "", 0
    while i < len(lines):
        if lines[i].startswith("#") and not lines[i].startswith("#!"):
            section = lines[i].lstrip("#").strip()
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        prev = MARK.match(lines[start - 1].strip()) if start else None
        mark = (prev.group(1), prev.group(2) or "") if prev else None
        blocks.append(Block(fence.group(1), start + 1, "\n".join(body) + "\n", mark, section))
        i += 1
    return blocks


BLOCKS = parse_blocks(README.read_text(encoding="utf-8"))
PYTHON = [b for b in BLOCKS if b.lang in ("python", "py")]
RUNNABLE = [b for b in PYTHON if b.mark is not None and b.mark[0] == "runnable"]


def test_readme_is_short_and_shows_the_three_jobs() -> None:
    """The README is the front page (the details are the documentation site's, whose test counts the blocks of
    each kind): at most ~200 lines, the two Quick start commands, one runnable block per job users come for."""
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    quick = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(quick) == 2 and quick[0].endswith("&& blox bench") and quick[1].endswith("&& pytest"), quick
    codes = [b.code for b in RUNNABLE]
    assert any('gym.make("Blox-v0"' in c for c in codes)                           # RL on Blox-v0
    assert any("BaseAgent" in c and "run_bench" in c for c in codes)               # your own agent, benchmarked
    assert any("Predictor" in c and ".fit(" in c for c in codes)                   # a graph predictor
    assert "@inproceedings{chau2022blox" in text and "CC BY-NC 4.0" in text
    assert any(b.lang == "bash" for b in BLOCKS)


def test_every_python_block_is_marked() -> None:
    unmarked = [b.line for b in PYTHON if b.mark is None]
    assert not unmarked, f"README.md python blocks without a runnable/not-runnable comment at lines {unmarked}"
    for b in PYTHON:
        kind, detail = b.mark  # type: ignore[misc]
        if kind == "runnable":
            assert detail in NEEDS, f"README.md:{b.line}: unknown runnable kind {detail!r} (one of {sorted(NEEDS)})"
        else:
            assert detail.strip(), f"README.md:{b.line}: not-runnable must say what the block needs"


@pytest.mark.parametrize("block", RUNNABLE, ids=[f"line{b.line}" for b in RUNNABLE])
def test_runnable_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(The hash table ``Arch.from_hash`` needs is built once per session by conftest, into memory.)"""
    for module in NEEDS[block.mark[1]]:  # type: ignore[index]
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"README.md:{block.line} needs {module}")
    monkeypatch.setenv("BLOX_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    # padded so that tracebacks give README.md's own line numbers
    code = compile("\n" * block.line + block.code, str(README), "exec")
    try:
        exec(code, {"__name__": "__readme__"})  # noqa: S102 - the README's own examples
    except Exception:  # noqa: BLE001 - report which block, then the traceback
        pytest.fail(f"README.md block at line {block.line} ({block.section}) failed:\n{traceback.format_exc()}")


# ------------------------------------------------------------------------------------------ bash blocks
#: command lines that cannot be parsed offline, with the reason (none at present)
UNCHECKED: dict[str, str] = {}
_SEPARATORS = {"&&", "||", ";", "|"}
_REDIRECTS = {">", ">>", "<", "2>", "&>"}


def blox_commands(blocks: list[Block]) -> list[tuple[int, list[str]]]:
    """``(README line, argv after 'blox')`` of every ``blox`` command in bash blocks (comments, chains and
    redirections stripped, continuation lines joined)."""
    out = []
    for b in blocks:
        if b.lang not in ("bash", "sh", "shell", "console"):
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
            tokens, command = list(lex), []
            commands = []
            skip = False
            for tok in tokens:
                if skip:
                    skip = False
                    continue
                if tok in _SEPARATORS:
                    commands.append(command)
                    command = []
                elif tok in _REDIRECTS:
                    skip = True
                else:
                    command.append(tok)
            commands.append(command)
            out += [(line, c[1:]) for c in commands if c and c[0] == "blox"]
    return out


COMMANDS = blox_commands(BLOCKS)


def _resolve(argv: list[str]) -> tuple[list[str], object, list[str]]:
    """(command path, click command, the rest of argv) of a ``blox`` argv."""
    cmd = typer.main.get_command(app)
    path, rest = [], list(argv)
    while hasattr(cmd, "commands") and rest and rest[0] in cmd.commands:
        path.append(rest[0])
        cmd = cmd.commands[rest.pop(0)]
    return path, cmd, rest


def test_readme_has_blox_commands() -> None:
    assert len(COMMANDS) >= 4
    assert {tuple(_resolve(argv)[0][:1]) for _, argv in COMMANDS} >= {("data",), ("bench",), ("predictors",)}


@pytest.mark.parametrize(("line", "argv"), COMMANDS, ids=[f"line{n}" for n, _ in COMMANDS])
def test_blox_command_parses(line: int, argv: list[str]) -> None:
    text = "blox " + " ".join(argv)
    if text in UNCHECKED:
        pytest.skip(UNCHECKED[text])
    path, cmd, rest = _resolve(argv)
    assert not hasattr(cmd, "commands"), f"README.md:{line}: `{text}` names a group, not a command"
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, f"README.md:{line}: `blox {' '.join(path)} --help` failed:\n{result.output}"
    known = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    for tok in rest:
        if tok.startswith("--"):
            assert tok.split("=", 1)[0] in known, f"README.md:{line}: `{text}`: no option {tok} (has {sorted(known)})"
    try:  # the whole line parses (types, counts of arguments) without running the command
        cmd.make_context("blox " + " ".join(path), list(rest))
    except Exception as exc:  # noqa: BLE001 - any parse error fails, naming the line
        pytest.fail(f"README.md:{line}: `{text}` does not parse: {exc}")


# ------------------------------------------------------------------------------------------ paths and names
_SPAN = re.compile(r"`([^`\n]+)`")
_FILE_EXT = (".py", ".md", ".toml", ".txt", ".zip", ".json", ".yml", ".yaml", ".cfg", ".png", ".npy")


def repo_paths(text: str) -> list[str]:
    """Backticked words that name a file or folder of the repository."""
    top = {p.name for p in ROOT.iterdir()}
    out = []
    for span in _SPAN.findall(text):
        for word in span.split():
            if any(c in word for c in "<>$~*") or "://" in word or "..." in word or word.startswith("-"):
                continue
            if "/" in word:
                first = word.split("/", 1)[0]
                if first in top or word.rstrip("/").endswith(_FILE_EXT):
                    out.append(word)
            elif re.fullmatch(r"[A-Z][A-Z_]*\.md|pyproject\.toml", word):
                out.append(word)
    return sorted(set(out))


def test_repo_paths_in_readme_exist() -> None:
    paths = repo_paths(README.read_text(encoding="utf-8"))
    assert "blox_env/data/blox-mini.zip" in paths and "examples/custom_agent.py" in paths
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, f"README.md names paths that a clone does not have: {missing}"


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent is a module, not a package
        return False


def test_dotted_names_in_readme_resolve() -> None:
    names = sorted({m.group(1) for m in re.finditer(r"`(blox_env(?:\.\w+)+)(?:\(\))?`",
                                                       README.read_text(encoding="utf-8"))})
    assert len(names) >= 2
    bad = []
    for name in names:
        parts = name.split(".")
        k = len(parts)
        while k > 1 and not _is_module(".".join(parts[:k])):
            k -= 1
        if k == len(parts):
            continue
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ModuleNotFoundError as exc:  # a module of an extra that is not installed here
            if (exc.name or "").split(".")[0] in ("torch", "dgl", "sklearn", "stable_baselines3", "ray"):
                continue
            raise
        for attr in parts[k:]:
            obj = getattr(obj, attr, None)
        if obj is None:
            bad.append(name)
    assert not bad, f"README.md names that do not resolve: {bad}"


def test_parser_sees_markers_and_lines() -> None:
    text = "# T\n\n<!-- runnable: train -->\n```python\nx = 1\n```\n\n```bash\nblox a && blox b -x # c\n```\n"
    blocks = parse_blocks(text)
    assert [(b.lang, b.line, b.mark, b.section) for b in blocks] == [
        ("python", 4, ("runnable", "train"), "T"), ("bash", 8, None, "T")]
    assert blox_commands(blocks) == [(9, ["a"]), (9, ["b", "-x"])]
