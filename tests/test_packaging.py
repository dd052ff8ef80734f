"""Packaging: pyproject and environment.yml agree; the CLI and lazy exports are in place.

Lint and types are checked by `make lint`, a prerequisite of `make test`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from click.testing import CliRunner

import cbm_dask
from cbm_dask.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# pip name -> conda-forge name(s) where they differ
CONDA_NAMES = {"dask": ["dask", "distributed"], "types-pyyaml": ["types-pyyaml"]}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = list(project["project"]["dependencies"])
    for extra, items in project["project"]["optional-dependencies"].items():
        reqs += [r for r in items if not r.startswith("cbm_dask[") and extra]
    for items in project["dependency-groups"].values():
        reqs += [r for r in items if isinstance(r, str)]
    names: set[str] = set()
    for req in reqs:
        names.update(CONDA_NAMES.get(_name(req), [_name(req)]))
    return names


def _environment_packages() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    names: set[str] = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            names.update(_name(p) for p in dep["pip"] if not p.startswith("-e"))
        elif _name(dep) not in {"python", "pip"}:
            names.add(_name(dep))
    return names


def test_environment_yml_lists_the_pyproject_dependencies() -> None:
    in_pyproject = _pyproject_packages()
    in_environment = _environment_packages()
    assert in_pyproject - in_environment == set(), "missing from environment.yml"
    assert in_environment - in_pyproject == set(), "missing from pyproject.toml"


def test_version_and_help() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert cbm_dask.__version__ in result.output
    result = runner.invoke(cli, ["--help"])
    for command in ("db", "parcels", "datasets", "demo"):
        assert command in result.output


def test_console_script_is_installed() -> None:
    result = subprocess.run([BIN / "cbm", "--version"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"cbm, version {cbm_dask.__version__}"


def test_main_verbs_are_reexported_lazily() -> None:
    from cbm_dask.load.cube import load_cube
    from cbm_dask.reduce import build_labels, scl_histogram, zonal_stats

    assert cbm_dask.zonal_stats is zonal_stats
    assert cbm_dask.build_labels is build_labels
    assert cbm_dask.scl_histogram is scl_histogram
    assert cbm_dask.load_cube is load_cube
    code = "import sys, cbm_dask; print('numba' in sys.modules, 'cbm_dask.reduce' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "False"], result.stderr
