"""The package's layers (README, Layout): imports only downward, checked by import-linter's contract in pyproject.toml.

The check runs on the real tree, and on a copy with one upward import added, which it must refuse by name: a
contract that cannot fail would prove nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(project: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", str(project / "pyproject.toml")], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)


def copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "src" / "turncoat", project / "src" / "turncoat",
                    ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    return project


def test_the_package_keeps_its_layers():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    project = copy_project(tmp_path)
    assert lint_imports(project).returncode == 0  # the copy is what is checked, and it passes as it is
    statistics = project / "src" / "turncoat" / "results" / "statistics.py"
    statistics.write_text(statistics.read_text() + "\n\nfrom turncoat.sampling import runner  # noqa: E402\n")
    result = lint_imports(project)
    assert result.returncode == 1
    assert "turncoat.results is not allowed to import turncoat.sampling" in result.stdout
    assert "turncoat.results.statistics -> turncoat.sampling" in result.stdout
