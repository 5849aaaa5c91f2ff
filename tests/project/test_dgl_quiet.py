"""DGL is imported quietly with the PyTorch backend: no backend notice, no ``~/.dgl/config.json`` written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("dgl")


def _import_in_fresh_home(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter whose HOME is an empty temp dir and with no DGLBACKEND set."""
    env = {k: v for k, v in os.environ.items() if k != "DGLBACKEND"}
    env["HOME"] = str(tmp_path)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def test_dgl_import_is_quiet_and_writes_nothing_in_home(tmp_path: Path) -> None:
    # the helper first (what every graph module does), then the modules that use DGL, in one interpreter
    code = ("import os; from blox_env.datasets.dgl_import import import_dgl; dgl = import_dgl(); "
            "import blox_env.datasets.graphs, blox_env.predictors.gcn, blox_env.predictors.brp; "
            "print(os.environ['DGLBACKEND'], dgl.backend.backend_name)")
    proc = _import_in_fresh_home(tmp_path, code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["pytorch", "pytorch"]
    assert "backend" not in proc.stderr.lower(), proc.stderr
    assert not (tmp_path / ".dgl").exists()

