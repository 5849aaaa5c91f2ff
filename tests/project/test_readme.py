"""README.md is true: its Python blocks run, its ``blox`` command lines parse, its repo paths exist.

The README is parsed by :mod:`markdown_blocks` (a regex over the Markdown, shared with the docs' test), not
through any project code:

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
import traceback
from pathlib import Path

import pytest
from markdown_blocks import NEEDS, Block, blox_commands, command_problem, parse_blocks, resolve_command
from typer.testing import CliRunner

from blox_env.cli.root import app

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
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

COMMANDS = blox_commands(BLOCKS)


def test_readme_has_blox_commands() -> None:
    assert len(COMMANDS) >= 4
    groups = {tuple(resolve_command(app, argv)[0][:1]) for _, argv in COMMANDS}
    assert groups >= {("data",), ("bench",), ("predictors",)}


@pytest.mark.parametrize(("line", "argv"), COMMANDS, ids=[f"line{n}" for n, _ in COMMANDS])
def test_blox_command_parses(line: int, argv: list[str]) -> None:
    text = "blox " + " ".join(argv)
    if text in UNCHECKED:
        pytest.skip(UNCHECKED[text])
    problem = command_problem(app, argv)
    assert problem is None, f"README.md:{line}: {problem}"
    path, _, _ = resolve_command(app, argv)
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, f"README.md:{line}: `blox {' '.join(path)} --help` failed:\n{result.output}"


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


def test_command_check_catches_groups_unknown_options_and_bad_values() -> None:
    assert command_problem(app, ["bench", "--seeds", "2", "--budgets", "5,10"]) is None
    assert "names a group" in command_problem(app, ["data"])
    assert "no option --nope" in command_problem(app, ["bench", "--nope", "1"])
    assert "does not parse" in command_problem(app, ["bench", "--seeds", "two"])
