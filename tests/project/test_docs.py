"""The documentation site is true: its Python blocks run, its ``blox`` lines parse, its examples run, and a
broken reference fails the build.

Pages are the Markdown files under ``docs/`` (the generated reports in ``docs/bench``, ``docs/predictors`` and
``docs/study`` and the build output excepted), parsed by :mod:`markdown_blocks` with the README's markers:
each runnable block runs in a fresh namespace in a temporary working directory with ``BLOX_HOME`` pointing into
it; a failure names the page and line. The tutorial's benchmark (``docs/tutorials/custom_agent.md``) runs at
tiny settings here and in full (its exact command, compared with the table the page shows) in the ``slow`` tier.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path

import pytest
from markdown_blocks import NEEDS, Block, blox_commands, command_problem, parse_blocks, resolve_command
from typer.testing import CliRunner

from blox_env.cli.root import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: generated reports (written by ``blox bench --report``, ``blox study``...) and build output: not pages written here
GENERATED = ("_build", "api/generated", "bench", "predictors", "study")
PAGES = sorted(p for p in DOCS.rglob("*.md") if not any(p.relative_to(DOCS).as_posix().startswith(g)
                                                          for g in GENERATED))
BLOCKS = [(page, b) for page in PAGES for b in parse_blocks(page.read_text(encoding="utf-8"))]
PYTHON = [(p, b) for p, b in BLOCKS if b.lang in ("python", "py")]
RUNNABLE = [(p, b) for p, b in PYTHON if b.mark is not None and b.mark[0] == "runnable"]
COMMANDS = [(p, line, argv) for p in PAGES for line, argv in blox_commands(
    [b for q, b in BLOCKS if q == p])]
TUTORIAL = DOCS / "tutorials" / "custom_agent.md"


def _id(page: Path, line: int) -> str:
    return f"{page.relative_to(DOCS).as_posix()}:{line}"


def test_pages_have_blocks_of_each_kind() -> None:
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert {"index.md", "getting-started.md", "guides/environments.md", "guides/agents.md",
            "tutorials/custom_agent.md", "architecture.md", "cli.md"} <= names
    assert len(RUNNABLE) >= 20, [_id(p, b.line) for p, b in RUNNABLE]
    assert {b.mark[1] for _, b in RUNNABLE if b.mark} == {"", "train", "predictors", "integrations"}
    assert len(COMMANDS) >= 30
    assert {tuple(resolve_command(app, argv)[0][:1]) for _, _, argv in COMMANDS} >= {
        ("space",), ("data",), ("train",), ("build",), ("bench",), ("study",), ("predictors",)}


def test_every_python_block_is_marked() -> None:
    unmarked = [_id(p, b.line) for p, b in PYTHON if b.mark is None]
    assert not unmarked, f"python blocks without a runnable/not-runnable comment: {unmarked}"
    for p, b in PYTHON:
        kind, detail = b.mark  # type: ignore[misc]
        if kind == "runnable":
            assert detail in NEEDS, f"{_id(p, b.line)}: unknown runnable kind {detail!r} (one of {sorted(NEEDS)})"
        else:
            assert detail.strip(), f"{_id(p, b.line)}: not-runnable must say what the block needs"


@pytest.mark.parametrize(("page", "block"), RUNNABLE, ids=[_id(p, b.line) for p, b in RUNNABLE])
def test_runnable_block_runs(page: Path, block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in NEEDS[block.mark[1]]:  # type: ignore[index]
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{_id(page, block.line)} needs {module}")
    monkeypatch.setenv("BLOX_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))  # pages run from a clone's root: ``examples`` imports
    code = compile("\n" * block.line + block.code, str(page), "exec")  # tracebacks give the page's own lines
    try:
        exec(code, {"__name__": "__docs__"})  # noqa: S102 - the docs' own examples
    except Exception:  # noqa: BLE001 - report which block, then the traceback
        pytest.fail(f"{_id(page, block.line)} ({block.section}) failed:\n{traceback.format_exc()}")


@pytest.mark.parametrize(("page", "line", "argv"), COMMANDS, ids=[_id(p, n) for p, n, _ in COMMANDS])
def test_blox_command_parses(page: Path, line: int, argv: list[str]) -> None:
    problem = command_problem(app, argv)
    assert problem is None, f"{_id(page, line)}: {problem}"


# ------------------------------------------------------------------------------------------ names and paths
_SPAN = re.compile(r"`([^`\n]+)`")


def _resolves(name: str) -> bool:
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ModuleNotFoundError as exc:
            if not (exc.name or "blox_env").startswith("blox_env"):
                return True  # a module of an extra that is not installed here (the core-only CI run)
            continue
        for attr in parts[k:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                return False
        return True
    return False


def test_dotted_names_and_paths_in_pages_exist() -> None:
    names, paths = set(), set()
    top = {p.name for p in ROOT.iterdir()}
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        names |= {m.group(1) for m in re.finditer(r"`(blox_env(?:\.\w+)+)(?:\(\))?`", text)}
        for span in _SPAN.findall(text):
            for word in span.split():
                word = word.strip("\"'(),")
                if "/" in word and word.split("/", 1)[0] in top and not any(c in word for c in "<>$*{}:"):
                    paths.add(word)
    assert len(names) > 10 and "examples/custom_agent.py" in paths
    assert not [n for n in sorted(names) if not _resolves(n)], "docs name objects that do not exist"
    assert not [p for p in sorted(paths) if not (ROOT / p).exists()], "docs name paths a clone does not have"


# ------------------------------------------------------------------------------------------ the tutorial
def _table_rows(text: str) -> list[str]:
    """The Markdown table rows of a benchmark table, whitespace-normalised."""
    return [" ".join(line.split()) for line in text.splitlines() if line.startswith("| ")]


def test_custom_agent_example_runs_tiny(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    monkeypatch.setenv("BLOX_HOME", str(tmp_path / "home"))
    monkeypatch.syspath_prepend(str(ROOT))
    from examples import custom_agent

    custom_agent.main(["--seeds", "2", "--budgets", "5,12"])
    rows = _table_rows(capsys.readouterr().out)
    assert [r.split(" | ")[0].lstrip("| ") for r in rows[2:]] == [
        "random", "evolution", "examples.custom_agent:GreedyNeighbour"]


def test_custom_agent_follows_the_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from blox_env import open_store
    from blox_env.agents import Agent
    from blox_env.agents.spec import resolve_agent
    from blox_env.rewards import TabularReward
    from examples.custom_agent import GreedyNeighbour

    assert resolve_agent("examples.custom_agent:GreedyNeighbour") is GreedyNeighbour
    backend = TabularReward(open_store("blox-mini"), seed_mode="mean")
    agent = GreedyNeighbour(backend.space, seed=0)
    assert isinstance(agent, Agent)
    asked = []
    for _ in range(40):
        arch = agent.ask()
        asked.append(arch.index)
        agent.tell(arch, backend.evaluate(arch, None))
    assert len(set(asked)) == len(asked)  # never asks a model twice
    assert agent.best is not None and agent.best[1] == max(v for _, v in agent.history)


def _tutorial_command() -> list[str]:
    commands = blox_commands(parse_blocks(TUTORIAL.read_text(encoding="utf-8")))
    bench = [argv for _, argv in commands if argv[:1] == ["bench"] and any("custom_agent" in a for a in argv)]
    assert bench, "the tutorial shows its blox bench command"
    return bench[0]


def test_tutorial_command_runs_tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tutorial's own command line with its seeds and budgets cut down (the full run is the slow test)."""
    argv = _tutorial_command()
    for option, tiny in (("--seeds", "2"), ("--budgets", "5,10")):
        argv[argv.index(option) + 1] = tiny
    monkeypatch.setenv("BLOX_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    result = CliRunner().invoke(app, [*argv, "--plot", str(tmp_path / "p.png")], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "GreedyNeighbour" in result.output


@pytest.mark.slow
def test_tutorial_output_is_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The table the tutorial shows is what its command prints (searches are seeded)."""
    argv = _tutorial_command()
    monkeypatch.setenv("BLOX_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    result = CliRunner().invoke(app, [*argv, "--plot", str(tmp_path / "p.png")], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    blocks = parse_blocks(TUTORIAL.read_text(encoding="utf-8"))
    shown = [b for b in blocks if b.lang == "text" and "| agent |" in b.code]
    assert shown, "the tutorial shows the run's output in a ```text block"
    assert _table_rows(shown[0].code) == _table_rows(result.output)


# ------------------------------------------------------------------------------------------ the build
_CONF = """
__file__ = {conf!r}
exec(compile(open(__file__).read(), __file__, "exec"))
exclude_patterns = ["_build"]
"""


def _sphinx(src: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-j", "1", "-b", "html",
                           str(src), str(out)], capture_output=True, text=True, timeout=600, cwd=src)


@pytest.mark.slow  # two small Sphinx builds: about a minute on 2 busy cores
def test_broken_reference_fails_the_build(tmp_path: Path) -> None:
    """A tiny site with the real configuration: it builds; a broken ``{py:func}`` or ``{doc}`` fails it."""
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    src = tmp_path / "site"
    src.mkdir()
    (src / "conf.py").write_text(_CONF.format(conf=str(DOCS / "conf.py")))
    (src / "index.md").write_text(textwrap.dedent("""\
        # Tiny

        ```{toctree}
        page
        ```
        """))
    api = textwrap.dedent("""\
        # Page

        ```{eval-rst}
        .. autofunction:: blox_env.bench.spec_key
        ```

        {py:func}`blox_env.bench.spec_key` and {py:class}`numpy.ndarray` (external, shown as code).
        """)
    (src / "page.md").write_text(api)
    ok = _sphinx(src, tmp_path / "ok")
    assert ok.returncode == 0, ok.stderr
    (src / "page.md").write_text(api + "\n{py:func}`blox_env.bench.spec_kee` and {doc}`no-such-page`.\n")
    broken = _sphinx(src, tmp_path / "broken")
    assert broken.returncode != 0
    assert "blox_env.bench.spec_kee" in broken.stderr and "no-such-page" in broken.stderr, broken.stderr


def test_architecture_names_every_package() -> None:
    """Every package the distribution installs has its row on the architecture page (the layering itself is
    rendered from pyproject.toml's contracts at build time, so it cannot drift)."""
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    missing = [p for p in packages if f"`{p}`" not in text and p != "blox_env"]
    assert not missing, f"docs/architecture.md does not name {missing}"
