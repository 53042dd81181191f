"""The one-way layers of DESIGN.md section 2, and every module importable."""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import codeloop

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_imports():
    names = [m.name for m in pkgutil.walk_packages(codeloop.__path__, "codeloop.")]
    for name in names:
        importlib.import_module(name)
    assert "codeloop.sandbox.worker" in names


def test_import_linter_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    result = subprocess.run([lint, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_evaluation_layers_do_not_import_torch():
    code = "import codeloop.cli, codeloop.eval, codeloop.sandbox, codeloop.data, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_package_type_checks():
    """mypy over src/ (settings in pyproject.toml): the annotations are part of the contract users read."""
    result = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", "/dev/null", str(ROOT / "src")], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
