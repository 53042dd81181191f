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


def test_the_package_and_its_benchmarks_and_scripts_type_check():
    """mypy over src/ (settings in pyproject.toml): the annotations are part of the contract users read; and
    over benchmarks/ and scripts/, which call that contract."""
    result = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", "/dev/null", "src", "benchmarks", "scripts"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_constraints_pin_each_dependency_at_the_version_pyproject_pins():
    """make installs with constraints.txt: a pin there that disagrees with pyproject.toml's makes pip refuse the
    install, and a dependency missing from it would come at whatever version is newest that day."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    constraints = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            constraints[re.sub(r"[-_.]+", "-", name).lower()] = version
    dev = {re.sub(r"[-_.]+", "-", d.split("==")[0]).lower() for d in project["optional-dependencies"]["dev"]}
    for pin in pins:
        name, version = pin.split("==")
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in dev or pin in project["dependencies"]:  # what make installs (vllm and crowd-kit it does not)
            assert constraints.get(key) == version, f"{name}: pyproject.toml pins {version}, constraints.txt {constraints.get(key)}"
    assert len(constraints) > len(dev) + len(project["dependencies"])  # their dependencies too
